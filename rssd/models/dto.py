"""DTOs and enums shared by every layer; they carry data, never behaviour with I/O.

Frozen msgspec Structs (built in C: a check builds a dozen), not pydantic models: their
values come from the database's STRICT tables (typed already) or from rssd's own code, so
there is nothing to validate, and the read-only commands (``rssd status``, ``rssd
posts``) read thousands of rows into them without importing pydantic for it. Rows
become DTOs in one place: rssd/repo/rows.py.
"""

from __future__ import annotations

from msgspec import Struct

# Defined without pydantic, so that the parse workers need not import it (rssd.fetch.worker);
# re-exported here for every other layer.
from rssd.models.codes import ErrorCode, FetchJobStatus
from rssd.models.post import PostCreate

__all__ = [
    "ErrorCode",
    "FetchJob",
    "FetchJobStatus",
    "FetchMeta",
    "LatestJob",
    "PostCreate",
    "Source",
]


class Source(Struct, frozen=True):
    """A row of ``content_sources``: one feed as synced from config.toml."""

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
    #: ``interval_minutes`` set on the feed itself: fixed. Otherwise it is only the start,
    #: and adaptive polling moves between the two bounds (rssd/daemon/schedule.py).
    interval_fixed: bool = False
    min_interval_minutes: float = 15.0
    max_interval_minutes: float = 1440.0

    @property
    def label(self) -> str | None:
        """What people call the feed: the configured name, else the feed's own title."""
        return self.name or self.feed_title


class FetchJob(Struct, frozen=True):
    """A row of ``fetch_job``: one fetch attempt, the audit trail and the duplicate guard."""

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
    #: A QUEUED job's planned wait before jitter, and why (rssd.daemon.schedule.Reason).
    interval_seconds: float | None = None
    interval_reason: str | None = None
    #: A QUEUED job's earliest start (the schedule); an ONGOING job's holder (a daemon id).
    not_before: str | None = None
    claimed_by: str | None = None


class FetchMeta(Struct, frozen=True):
    """What the HTTP exchange told us, recorded on the job whatever its outcome."""

    http_status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    bytes: int | None = None
    final_url: str | None = None


class LatestJob(Struct, frozen=True):
    """A source's latest finished job and its run of failures: what scheduling and
    ``rssd status`` read (rssd/daemon/history.py)."""

    source_id: int
    source_updated_at: str
    job_id: int | None
    status: FetchJobStatus | None
    ended_at: str | None
    error_code: ErrorCode | None
    http_status: int | None
    failures: int  # FAILED jobs since the last COMPLETED one, ``interrupted`` not counted
    last_success_at: str | None
    active: bool = False  # the source has a QUEUED or ONGOING job (its next fetch is planned)
