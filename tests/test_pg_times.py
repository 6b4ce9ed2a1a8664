"""PostgreSQL's times come back as the ISO 8601 UTC text SQLite stores (``clock.to_iso``),
formatted from the server's own text by ``postgres.ADAPTERS``: the quick way for a server
in UTC, the long way for any other zone, the same text both ways. Checked against
``to_iso`` of the datetime psycopg itself reads, on the real server."""

from __future__ import annotations

import pytest

from rssd.clock import to_iso
from rssd.repo.postgres import ADAPTERS
from tests.support.postgres import admin_connection

VALUES = [
    "2026-12-05 10:46:24.027472+00",  # six digits: milliseconds cut, not rounded
    "2026-12-05 10:46:24.999999+00",
    "2026-12-05 10:46:24.5+00",  # PostgreSQL drops the trailing zeros
    "2026-12-05 10:46:24.04+00",
    "2026-12-05 10:46:24+00",  # no fraction at all
    "2026-01-01 00:00:00.001+00",
    "0001-01-02 00:00:00+00",  # year 1, zero-padded
    "2026-06-30 23:59:59.123456-07",  # another zone's offset
    "2026-06-30 23:59:59.5+05:30",
]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_times_read_as_rssds_iso_text_in_any_session_zone(zone: str) -> None:
    with admin_connection() as plain, admin_connection(context=ADAPTERS) as ours:
        for conn in (plain, ours):
            conn.execute(f"SET TIME ZONE '{zone}'")
        for value in VALUES:
            query = "SELECT %s::timestamptz, (%s::timestamptz AT TIME ZONE 'UTC')"
            moment, local = plain.execute(query, (value, value)).fetchone() or (None, None)
            assert moment is not None and local is not None
            got = ours.execute(query, (value, value)).fetchone()
            assert got == (to_iso(moment), to_iso(local)), value  # type: ignore[arg-type]
