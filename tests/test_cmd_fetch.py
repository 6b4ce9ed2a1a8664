"""``rssd fetch``: the daemon's pipeline and guards, without the daemon's lock or recovery."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from aiohttp import web

from rssd.daemon.lock import DaemonLock
from rssd.repo.open import open_database
from tests.conftest import FeedServer
from tests.support.commands import World, cli, dated_rss, populated
from tests.support.config import write_config
from tests.support.jobs import ongoing_job
from tests.support.process import WAIT, Daemons

pytestmark = pytest.mark.both_backends


async def jobs_of(world: World, url: str) -> list[tuple[str, str | None]]:
    db = await open_database(world.database)
    try:
        rows = await db.fetchall(
            "SELECT j.status, j.error_code FROM fetch_job j JOIN content_sources s "
            "ON s.id = j.content_source_id WHERE s.url = :url ORDER BY j.id",
            {"url": url},
        )
    finally:
        await db.close()
    return [(row[0], row[1]) for row in rows]


async def test_fetch_by_id_and_url(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    world = await populated(feed_server, tmp_path, db_target)
    feed_server.static("/ok", dated_rss(["fresh"], name="fresh"))
    result = await cli("fetch", "-c", world.config, "1", world.urls["news"])
    assert result.code == 0, result.err
    lines = sorted(result.out.splitlines())
    assert lines[0].startswith(f"{world.urls['news']} (id 2): ok, HTTP 200, unchanged")
    assert lines[1].startswith(f"{world.urls['ok']} (id 1): ok, HTTP 200, 1 new and 0 updated")
    assert await jobs_of(world, world.urls["ok"]) == [("COMPLETED", None), ("COMPLETED", None)]
    # A new feed (never fetched by the daemon) can be fetched by hand as well.
    first = await cli("fetch", "-c", world.config, world.urls["new"])
    assert first.code == 0, first.err
    assert "1 new" in first.out


async def test_a_failed_fetch_exits_1(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    world = await populated(feed_server, tmp_path, db_target)
    result = await cli("fetch", "-c", world.config, world.urls["failing"], "1")
    assert result.code == 1
    failed = next(line for line in result.out.splitlines() if "(id 3)" in line)
    assert "failed, http_error (HTTP 500)" in failed
    assert "(id 1): ok" in result.out  # the other feed was fetched all the same


async def test_refused_while_the_feed_is_being_fetched(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    world = await populated(feed_server, tmp_path, db_target)
    # What a daemon in the middle of fetching source 1 leaves in the database.
    db = await open_database(world.database)
    try:
        await ongoing_job(db, 1)
    finally:
        await db.close()
    result = await cli("fetch", "-c", world.config, "1")
    assert result.code == 3
    assert "refused: this feed is being fetched right now" in result.out
    # No crash recovery: the daemon's job is still its own, untouched.
    assert (await jobs_of(world, world.urls["ok"]))[-1] == ("ONGOING", None)
    status = await cli("status", "-c", world.config, "--json")
    ok = next(s for s in status.json()["sources"] if s["id"] == 1)
    assert ok["fetching"] is True
    assert ok["current_attempt"]["status"] == "ONGOING"
    assert ok["last_attempt"]["status"] == "COMPLETED"  # the last result, not the running one
    assert ok["state"] == "ok"  # judged by the last finished job


async def test_runs_beside_a_daemon_holding_the_lock(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    world = await populated(feed_server, tmp_path)
    assert isinstance(world.database, Path)
    with DaemonLock(world.database):
        result = await cli("fetch", "-c", world.config, "2")
    assert result.code == 0, result.err


async def test_unknown_feeds_are_usage_errors_and_fetch_nothing(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    world = await populated(feed_server, tmp_path, db_target)
    hits = dict(feed_server.hits)
    unknown_id = await cli("fetch", "-c", world.config, "1", "99")
    assert unknown_id.code == 2
    assert "no feed with id 99" in unknown_id.err
    unknown_url = await cli("fetch", "-c", world.config, "https://nowhere.example/feed")
    assert unknown_url.code == 2
    assert feed_server.hits == hits  # feed 1 was not fetched either: a typo fetches nothing

    # In the config but not yet in the database (no daemon has loaded the config since).
    later = feed_server.static("/later", "<rss version='2.0'><channel></channel></rss>")
    write_config(
        world.config, [{"url": world.urls["ok"]}, {"url": later}], database=str(world.database)
    )
    pending = await cli("fetch", "-c", world.config, later)
    assert pending.code == 2
    assert "not in the database yet" in pending.err


async def test_without_a_database(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", [{"url": "https://example.org/feed"}])
    result = await cli("fetch", "-c", config, "1")
    assert result.code == 1
    assert "no database" in result.err
    assert not (tmp_path / "rssd.sqlite3").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_a_stopped_fetch_records_its_job_as_interrupted(
    feed_server: FeedServer,
    tmp_path: Path,
    daemons: Daemons,
    sig: signal.Signals,
    code: int,
) -> None:
    world = await populated(feed_server, tmp_path)
    arrived = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    feed_server.route("/ok", hang)
    fetch = await daemons.spawn("fetch", "-c", world.config, "1")
    try:
        async with asyncio.timeout(WAIT):
            await arrived.wait()
    except TimeoutError:
        pytest.fail(f"the feed was never requested\n{fetch.log()}")
    assert await fetch.stop(sig) == code, fetch.log()
    assert (await jobs_of(world, world.urls["ok"]))[-1] == ("FAILED", "interrupted")
