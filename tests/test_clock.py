"""rssd.clock.to_iso: the one text form of every stored time (sortable, as SQLite compares
it), whatever zone the datetime came in (PostgreSQL hands back timestamptz)."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta, timezone

import pytest

from rssd.clock import parse_iso, to_iso


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 12, 5, 9, 30, 1, 123456, tzinfo=UTC), "2026-12-05T09:30:01.123Z"),
        (datetime(2026, 12, 5, 9, 30, 1, 999999), "2026-12-05T09:30:01.999Z"),  # naive: UTC
        (datetime(1, 1, 1, 0, 0, 0, 999), "0001-01-01T00:00:00.000Z"),  # the year padded
        (
            datetime(2026, 12, 5, 10, 30, 1, 5000, tzinfo=timezone(timedelta(hours=1))),
            "2026-12-05T09:30:01.005Z",
        ),
        (
            datetime(2026, 7, 5, 10, 30, 1, tzinfo=zoneinfo.ZoneInfo("Europe/Paris")),
            "2026-07-05T08:30:01.000Z",
        ),
        (
            datetime(2026, 1, 5, 0, 30, tzinfo=zoneinfo.ZoneInfo("Europe/London")),
            "2026-01-05T00:30:00.000Z",  # offset 0, another zone: the same instant
        ),
        (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "9999-12-31T23:59:59.999Z"),
    ],
)
def test_to_iso_is_utc_text_to_the_millisecond(moment: datetime, expected: str) -> None:
    assert to_iso(moment) == expected
    assert parse_iso(expected) == moment.replace(
        microsecond=moment.microsecond // 1000 * 1000,
        tzinfo=moment.tzinfo or UTC,
    )
