"""One place that turns time into the ISO 8601 UTC text stored in every timestamp column."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """ISO 8601 UTC with a ``Z`` and millisecond precision: sortable as text, as SQLite
    compares. Formatted by hand, not with strftime (whose %Y is not zero-padded on glibc:
    year 1 -> "1-01-01"), and converted only when not in UTC already. PostgreSQL's rows
    get the same text from rssd.repo.postgres.ADAPTERS (from the server's text, as a rule
    without a datetime in between)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elif moment.utcoffset():
        moment = moment.astimezone(UTC)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


def now_iso() -> str:
    return to_iso(utcnow())


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
