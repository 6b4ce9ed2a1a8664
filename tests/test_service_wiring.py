"""The wiring of ``rssd run``: what the running service does with each outcome, over several
fetches. The pure parts (next_due, backoff, the repositories) have their own table tests;
these catch a service that computes the right things and then drops them.

In-process tests run the real ``Service`` (scheduler, pipeline, fetcher, parse pool, SQLite)
in the test's loop, with one change: the interval's unit is shrunk from minutes to a fifth
of a second, so that several fetches of a feed fit in a test. What they assert is the order
of requests and the service's own state, never a duration. Subprocess tests run
``rssd run`` itself where its log is the contract (``source.gone``, ``stats``, pruning).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from rssd.clock import parse_iso, utcnow
from rssd.daemon.schedule import JITTER, Activity, Policy, backoff
from rssd.daemon.service import MOVED_AFTER, Service
from rssd.models.config import load_config
from rssd.models.dto import ErrorCode, Source
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer, rss
from tests.support.config import write_config
from tests.support.jobs import queue_job
from tests.support.process import WAIT, Daemons

pytestmark = pytest.mark.slow

INTERVAL = timedelta(seconds=0.2)
ITEMS = [{"title": f"Post {n}", "guid": f"urn:post:{n}"} for n in (1, 2, 3)]


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process service must not talk to a systemd the test run itself may be under."""
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


class FastService(Service):
    """The real service; only the interval's unit is shrunk (see the module docstring)."""

    def _policy(self, source: Source, activity: Activity | None = None) -> Policy:
        return Policy(interval=INTERVAL)


class Requests:
    """The paths requested of the feed server, in order; wakes waiters on each."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._grew = asyncio.Event()

    def seen(self, path: str) -> None:
        self.paths.append(path)
        self._grew.set()

    async def until(self, done: Callable[[], bool], service: asyncio.Task[None]) -> None:
        """Wait until ``done()`` holds; fail if the service ends first or at the hang guard."""
        async with asyncio.timeout(WAIT):
            while not done():
                self._grew.clear()
                waiter = asyncio.ensure_future(self._grew.wait())
                await asyncio.wait([waiter, service], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if service.done():
                    service.result()  # its exception, if any
                    pytest.fail(f"the service stopped; requests so far: {self.paths}")


@asynccontextmanager
async def running(config: Path) -> AsyncIterator[tuple[Service, asyncio.Task[None]]]:
    service = FastService(config, load_config(config))
    task = asyncio.create_task(service.run())
    try:
        yield service, task
    finally:
        service.stop()
        async with asyncio.timeout(WAIT):
            await asyncio.gather(task, return_exceptions=True)


async def test_consecutive_failures_accumulate_and_back_off_in_the_running_service(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """Each failed fetch adds one to the source's failures (carried by its next QUEUED job,
    rssd.daemon.schedule.plan_next), and the next fetch waits the backed-off interval: 1x,
    2x, 4x ... At each request the test reads, from the database, the failures the running
    job was claimed with and when the previous attempt ended."""
    requests = Requests()
    histories: list[tuple[int, datetime | None, datetime]] = []
    probe = await open_database(tmp_path / "rssd.sqlite3")

    async def failing(request: web.Request) -> web.StreamResponse:
        row = await probe.fetchone(
            "SELECT failures, (SELECT max(ended_at) FROM fetch_job WHERE status = 'FAILED') "
            "FROM fetch_job WHERE status = 'ONGOING'"
        )
        assert row is not None
        histories.append((row[0], parse_iso(row[1]) if row[1] else None, utcnow()))
        requests.seen(request.path)
        return web.Response(status=500, text="down")

    url = feed_server.route("/bad", failing)
    config = write_config(tmp_path / "config.toml", [url])
    try:
        async with running(config) as (_, task):
            await requests.until(lambda: len(requests.paths) >= 4, task)
    finally:
        await probe.close()
    failures = [count for count, _, _ in histories[:4]]
    assert failures == [0, 1, 2, 3], histories
    # Lower bounds only: a loaded machine makes a fetch later, never earlier.
    for count, ended_at, requested_at in histories[1:4]:
        assert ended_at is not None
        least = backoff(INTERVAL, count, timedelta(hours=24)) * (1 - JITTER)
        assert requested_at - ended_at >= least, (count, requested_at - ended_at, least)


async def test_a_feed_that_moved_is_fetched_at_its_new_url_until_that_fails(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """A 301 seen MOVED_AFTER times in a row: the service fetches the new URL directly
    (the next job's fetch_url) and keeps the configured URL in content_sources. When the
    new URL fails, it goes back to the configured one."""
    assert MOVED_AFTER == 2  # the expected order of requests below is written for 2
    requests = Requests()
    new_hits = 0

    async def old(request: web.Request) -> web.StreamResponse:
        requests.seen(request.path)
        return web.Response(status=301, headers={"Location": "/new"})

    async def new(request: web.Request) -> web.StreamResponse:
        nonlocal new_hits
        requests.seen(request.path)
        new_hits += 1
        if new_hits == 4:  # the second direct fetch of the new URL
            return web.Response(status=500, text="moved again?")
        return web.Response(text=rss(ITEMS), content_type="application/rss+xml")

    url = feed_server.route("/old", old)
    feed_server.route("/new", new)
    config = write_config(tmp_path / "config.toml", [url])
    async with running(config) as (_, task):
        await requests.until(lambda: len(requests.paths) >= 11, task)
    assert requests.paths[:11] == [
        "/old", "/new",  # 301 seen once
        "/old", "/new",  # twice: moved
        "/new",  # fetched directly
        "/new",  # directly again: 500, so back to the configured URL
        "/old", "/new",  # the moved count starts over
        "/old", "/new",
        "/new",  # moved again
    ]  # fmt: skip
    with closing(sqlite3.connect(tmp_path / "rssd.sqlite3")) as db:
        assert db.execute("SELECT url FROM content_sources").fetchall() == [(url,)]
        posts = db.execute("SELECT count(*) FROM posts").fetchone()
    assert posts == (3,)


# -- rssd run as a process: its log ---------------------------------------------------------


async def test_a_410_is_logged_source_gone_and_not_scheduled(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons
) -> None:
    gone = feed_server.static("/gone", "bye", status=410, content_type="text/plain")
    good = feed_server.static("/good", rss(ITEMS))
    config = write_config(tmp_path / "config.toml", [gone, good])
    daemon = await daemons.start(config)
    failed = await daemon.wait_for("fetch.failed", url=gone, error_code=ErrorCode.GONE.value)
    event = daemon.events[await daemon.wait_for("source.gone", start=failed, url=gone)]
    assert event["level"] == "warning"
    assert "410" in event["detail"]
    await daemon.wait_for("fetch.completed", url=good)
    assert await daemon.stop() == 0, daemon.log()
    assert daemon.all("source.gone", url=good) == []


async def seed_old_jobs(config: Path) -> int:
    """Two failed jobs of 200 days ago (past keep_fetch_jobs_days, 90) for the config's
    first feed: the older one is not the source's latest job, so retention deletes it at
    once; the other once this run's fetch is the latest. Returns the older one's id."""
    loaded = load_config(config)
    db = await open_database(loaded.database)
    try:
        await SourceRepo(db).sync(loaded)
        source = (await SourceRepo(db).list())[0]
        jobs = FetchJobRepo(db)
        ids = []
        for _ in range(2):
            job = await queue_job(db, source.id)
            assert job is not None
            await jobs.mark_failed(job.id, ErrorCode.HTTP_ERROR, "seeded by the test")
            ids.append(job.id)
    finally:
        await db.close()
    old = (utcnow() - timedelta(days=200)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    with closing(sqlite3.connect(loaded.database)) as raw, raw:
        raw.execute(
            "UPDATE fetch_job SET queued_at = :at, started_at = :at, ended_at = :at",
            {"at": old},
        )
    return ids[0]


async def test_stats_events_count_what_the_service_did_and_retention_runs(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons
) -> None:
    """RSSD_STATS_SECONDS / RSSD_PRUNE_SECONDS shorten the housekeeping periods: the
    ``stats`` events add up to the fetches made (one ok with 3 new posts, one failed), and
    retention deletes the job past keep_fetch_jobs_days (``jobs.pruned``)."""
    good = feed_server.static("/good", rss(ITEMS))
    bad = feed_server.static("/bad", "down", status=500, content_type="text/plain")
    config = write_config(tmp_path / "config.toml", [good, bad])
    prunable = await seed_old_jobs(config)
    daemon = await daemons.start(
        config, env={"RSSD_STATS_SECONDS": "0.2", "RSSD_PRUNE_SECONDS": "0.2"}
    )
    await daemon.wait_for("fetch.completed", url=good, posts_new=3)
    await daemon.wait_for("fetch.failed", url=bad)
    pruned, mark = 0, 0
    while pruned < 2:  # the older seeded job at once, the other once it is not the latest
        mark = await daemon.wait_for("jobs.pruned", start=mark) + 1
        pruned += daemon.events[mark - 1]["jobs"]
    assert pruned == 2, daemon.log()

    expected = {"fetches_ok": 1, "fetches_failed": 1, "posts_new": 3}
    totals = dict.fromkeys(expected, 0)
    start = 0
    try:
        async with asyncio.timeout(WAIT):  # stats come every 0.2 s: a lost count spins
            while totals != expected:  # a fetch recorded just after a tick counts next time
                start = await daemon.wait_for("stats", start=start) + 1
                event = daemon.events[start - 1]
                for key in totals:
                    totals[key] += event[key]
                assert all(totals[key] <= expected[key] for key in totals), (
                    totals,
                    daemon.log(),
                )
    except TimeoutError:
        pytest.fail(f"the stats events add up to {totals}, not {expected}\n{daemon.log()}")
    assert event["sources"] == 2
    assert event["database_bytes"] > 0
    assert isinstance(event["loop_lag_max_ms"], int | float)
    assert await daemon.stop() == 0, daemon.log()
    with closing(sqlite3.connect(tmp_path / "rssd.sqlite3")) as db:
        left = db.execute(
            "SELECT id FROM fetch_job WHERE status != 'QUEUED' ORDER BY id"
        ).fetchall()
    assert prunable not in [job_id for (job_id,) in left]
    # The two fetches of this run, none of the seeded jobs (and each feed's next fetch,
    # QUEUED: the schedule).
    assert len(left) == 2, left
