"""DTOs and enums shared by every layer; they carry data, never behaviour with I/O."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class FetchJobStatus(StrEnum):
    """The FetchJob state machine: QUEUED -> ONGOING -> COMPLETED | FAILED."""

    QUEUED = "QUEUED"
    ONGOING = "ONGOING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def is_active(self) -> bool:
        return self in (FetchJobStatus.QUEUED, FetchJobStatus.ONGOING)


class ErrorCode(StrEnum):
    """Why a fetch failed: the DESIGN.md contract, stored in fetch_job.error_code."""

    TIMEOUT = "timeout"
    DNS = "dns"
    CONNECTION = "connection"
    TLS = "tls"
    HTTP_ERROR = "http_error"
    RATE_LIMITED = "rate_limited"
    GONE = "gone"
    TOO_LARGE = "too_large"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    NOT_A_FEED = "not_a_feed"
    PARSE_ERROR = "parse_error"
    INTERRUPTED = "interrupted"
    INTERNAL = "internal"


class PostCreate(BaseModel):
    """One feed entry, normalized, ready to be upserted into ``posts``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    external_id: str
    title: str | None = None
    url: str | None = None
    author: str | None = None
    summary: str | None = None
    content: str | None = None
    published_at: str | None = None
    updated_at: str | None = None
    content_hash: str


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


class FetchMeta(BaseModel):
    """What the HTTP exchange told us, recorded on the job whatever its outcome."""

    model_config = ConfigDict(frozen=True)

    http_status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    bytes: int | None = None
    final_url: str | None = None
