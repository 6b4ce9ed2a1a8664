"""The FetchJob states and error codes (a contract: README, "Failure behaviour").

Plain enums: no pydantic, so the parse workers can use them without importing it."""

from __future__ import annotations

from enum import StrEnum


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
    """Why a fetch failed: a contract documented in README, stored in fetch_job.error_code."""

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
