"""Issue 14.4: a validator that cannot be sent back costs one 200, never the feed.

Before: a stored ``ETag: "a\\x7fb"`` or a ``Last-Modified`` with an ESC made every later
request fail client-side ("Forbidden control character"), and ``ETag: "\\xe9"`` every fetch
fail ``internal``, for good, even after the server was fixed. Each hostile response is a
fixture (tests/fixtures/hostile/*.http) served byte for byte on loopback; each feed is
fetched twice by real ``run_once`` runs on one database.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rssd.fetch.http import MAX_VALIDATOR_CHARS, sendable_validator
from tests.conftest import FIXTURES, FeedServer
from tests.support.resilience import RawServer, run_feeds

HOSTILE = FIXTURES / "hostile"
CASES = ["etag-del.http", "last-modified-esc.http", "etag-latin1.http"]


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ('"abc-123"', True),
        ('W/"weak"', True),
        ("Mon, 30 Nov 2026 12:00:00 GMT", True),
        ('"a\x7fb"', False),
        ("Mon, 30 Nov 2026 \x1b[31m12:00:00 GMT", False),
        ('"\xe9"', False),
        ('"a\r\nX-Injected: 1"', False),
        ('"' + "x" * MAX_VALIDATOR_CHARS + '"', False),
        ("", False),
        (None, False),
    ],
)
def test_sendable_validator_table(value: str | None, kept: bool) -> None:
    assert sendable_validator(value) == (value if kept else None)


@pytest.fixture
async def raw() -> AsyncIterator[dict[str, str]]:
    server = RawServer()
    urls = {}
    for name in CASES:
        payload = (HOSTILE / name).read_bytes()

        async def handler(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes = payload
        ) -> None:
            writer.write(data)
            await writer.drain()

        server.route(f"/{name}", handler)
    await server.start()
    for name in CASES:
        urls[name] = server.url(f"/{name}")
    try:
        yield urls
    finally:
        await server.stop()


def stored_validators(database: Path) -> dict[str, tuple[str | None, str | None]]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute(
            "SELECT s.url, j.etag, j.last_modified FROM fetch_job j "
            "JOIN content_sources s ON s.id = j.content_source_id ORDER BY j.id"
        ).fetchall()
    return {url: (etag, modified) for url, etag, modified in rows}


async def test_a_bad_validator_is_not_kept_and_the_feed_keeps_working(
    raw: dict[str, str], tmp_path: Path
) -> None:
    urls = list(raw.values())
    first = await run_feeds(tmp_path, urls)
    for url in urls:
        first.assert_completed(url, 1)
    assert set(stored_validators(tmp_path / "rssd.sqlite3").values()) == {(None, None)}

    second = await run_feeds(tmp_path, urls)
    for url in urls:
        jobs = second.jobs[url]
        assert [job.status for job in jobs] == ["COMPLETED", "COMPLETED"], jobs
        assert jobs[-1].http_status == 200  # the cost: an unconditional request


async def test_a_bad_validator_stored_by_an_older_rssd_is_not_sent(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    url = feed_server.static("/feed", (HOSTILE / "bidi-titles.rss").read_bytes())
    (await run_feeds(tmp_path, [url])).assert_completed(url, 1)
    with contextlib.closing(sqlite3.connect(tmp_path / "rssd.sqlite3")) as db, db:
        db.execute(
            "UPDATE fetch_job SET etag = :etag, last_modified = :modified, content_hash = NULL",
            {"etag": '"a\x7fb"', "modified": '"\xe9"'},
        )
    second = await run_feeds(tmp_path, [url])
    assert [job.status for job in second.jobs[url]] == ["COMPLETED", "COMPLETED"]
    request = feed_server.requests[-1]
    assert "If-None-Match" not in request.headers
    assert "If-Modified-Since" not in request.headers
