"""DTOs and enums shared by every layer; they carry data, never behaviour with I/O."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# Defined without pydantic, so that the parse workers need not import it (rssd.fetch.worker);
# re-exported here for every other layer.
from rssd.models.codes import ErrorCode, FetchJobStatus
from rssd.models.post import PostCreate

__all__ = ["ErrorCode", "FetchJob", "FetchJobStatus", "FetchMeta", "PostCreate", "Source"]


class Source(BaseModel):
    """A row of ``content_sources``: one feed as synced from config.toml."""

    model_config = ConfigDict(frozen=True)

    id: int
    url: str
    name: str | None
    interval_minutes: int
    timeout_seconds: float
    enabled: bool
    created_at: str
    updated_at: str
    #: The feed's own title (its <title>), refreshed when it changes.
    feed_title: str | None = None
    #: The feed a homepage URL led to (``<link rel="alternate">``); None: ``url`` is the feed.
    feed_url: str | None = None
    #: From config.toml, "Blogs / Linux" for nested folders.
    category: str | None = None

    @property
    def label(self) -> str | None:
        """What people call the feed: the configured name, else the feed's own title."""
        return self.name or self.feed_title


class FetchJob(BaseModel):
    """A row of ``fetch_job``: one fetch attempt, the audit trail and the duplicate guard."""

    model_config = ConfigDict(frozen=True)

    id: int
    content_source_id: int
    status: FetchJobStatus
    queued_at: str
    started_at: str | None = None
    ended_at: str | None = None
    error_code: ErrorCode | None = None
    error_message: str | None = None
    posts_count: int = 0
    http_status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    bytes: int | None = None
    final_url: str | None = None
    #: A QUEUED job's earliest start (the schedule); an ONGOING job's holder (a daemon id).
    not_before: str | None = None
    claimed_by: str | None = None


class FetchMeta(BaseModel):
    """What the HTTP exchange told us, recorded on the job whatever its outcome."""

    model_config = ConfigDict(frozen=True)

    http_status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    bytes: int | None = None
    final_url: str | None = None
