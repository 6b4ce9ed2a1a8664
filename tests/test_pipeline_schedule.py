"""What the daemon learns from a feed is in the database, so it survives a restart.

A Retry-After, a Cache-Control max-age, a permanent redirect: each ends up in the source's
next QUEUED job (its not_before, its fetch_url), written with the job that learned it, and a
new process (a new Database, a new Pipeline) goes on from there. On both backends.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from email.utils import format_datetime
from itertools import pairwise
from pathlib import Path

import pytest
from aiohttp import web

from rssd import metrics
from rssd.clock import parse_iso, to_iso, utcnow
from rssd.daemon.pipeline import Pipeline
from rssd.daemon.reconcile import reconcile
from rssd.daemon.schedule import MOVED_AFTER
from rssd.daemon.startup import daemon_session
from rssd.fetch.fetcher import Fetcher
from rssd.models.config import Config
from rssd.models.dto import FetchJobStatus
from rssd.repo.claims import ClaimRepo
from rssd.repo.db import Database
from rssd.repo.hosts import HostRepo
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer, rss
from tests.support.config import make_config

pytestmark = pytest.mark.both_backends

BODY = rss([{"guid": "urn:1", "title": "One"}])


async def queued(db: Database, url: str) -> tuple[str, str | None, int]:
    """The source's QUEUED job: (not_before, fetch_url, failures)."""
    row = await db.fetchone(
        "SELECT j.not_before, j.fetch_url, j.failures FROM fetch_job j "
        "JOIN content_sources s ON s.id = j.content_source_id "
        "WHERE s.url = :url AND j.status = 'QUEUED'",
        {"url": url},
    )
    assert row is not None, f"no QUEUED job for {url}"
    return row[0], row[1], row[2]


async def fetch_all(config: Config) -> None:
    """One daemon-like pass in a fresh process's worth of objects: reconcile, then fetch
    every source once through its scheduled job."""
    async with asyncio.timeout(60), daemon_session(config) as db:
        claims = ClaimRepo(db, "test")
        await reconcile(db, claims, random.Random(1))
        async with Fetcher(config) as fetcher:
            pipeline = Pipeline(db, fetcher, claims)
            for source in await SourceRepo(db).list(enabled_only=True):
                report = await pipeline.run(source)
                assert report.status is not None, report


async def test_hints_and_a_move_survive_a_restart(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    limited = feed_server.static(
        "/limited", "slow down", status=429, headers={"Retry-After": "7200"}
    )
    cached = feed_server.static("/cached", BODY, headers={"Cache-Control": "max-age=10800"})
    new_home = feed_server.static("/new-home", BODY)

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(new_home)

    old_home = feed_server.route("/old-home", moved)
    config = make_config(tmp_path, [limited, cached, old_home], database=str(db_target))

    for _ in range(MOVED_AFTER):
        await fetch_all(config)
    db = await open_database(db_target)  # "after a restart": only what the database holds
    try:
        now = utcnow()
        not_before, _, failures = await queued(db, limited)
        assert parse_iso(not_before) > now + timedelta(minutes=100), "Retry-After: 2 h"
        assert failures == MOVED_AFTER, "two 429s in a row: the backoff goes on too"
        not_before, _, _ = await queued(db, cached)
        assert parse_iso(not_before) > now + timedelta(minutes=150), "max-age: 3 h"
        _, fetch_url, _ = await queued(db, old_home)
        assert fetch_url == new_home
    finally:
        await db.close()

    hits_before = dict(feed_server.hits)
    await fetch_all(config)  # a third pass: straight to the new home
    assert feed_server.hits.get("/old-home", 0) == hits_before["/old-home"]
    assert feed_server.hits["/new-home"] == hits_before["/new-home"] + 1

    db = await open_database(db_target)
    try:
        rows = await db.fetchall(
            "SELECT j.status FROM fetch_job j JOIN content_sources s "
            "ON s.id = j.content_source_id WHERE s.url = :url ORDER BY j.id",
            {"url": old_home},
        )
        statuses = [FetchJobStatus(row[0]) for row in rows]
        assert statuses == [FetchJobStatus.COMPLETED] * 3 + [FetchJobStatus.QUEUED]
    finally:
        await db.close()


async def test_a_429_with_retry_after_pauses_the_whole_host_and_the_reason_is_kept(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    """Issue 24: the host is paused for every feed on it, not only the one that got the
    429; the job's planned interval says why (a publisher hint); the feed next door with
    no history starts at the global interval."""
    limited = feed_server.static(
        "/limited", "slow down", status=429, headers={"Retry-After": "7200"}
    )
    neighbour = feed_server.static("/neighbour", BODY)
    config = make_config(tmp_path, [limited, neighbour], database=str(db_target))
    async with asyncio.timeout(60), daemon_session(config) as db:
        claims = ClaimRepo(db, "test")
        await reconcile(db, claims, random.Random(1))
        async with Fetcher(config) as fetcher:
            pipeline = Pipeline(db, fetcher, claims)
            source = await SourceRepo(db).get_by_url(limited)
            assert source is not None
            await pipeline.run(source)
        paused = await HostRepo(db).paused()
        assert set(paused) == {"127.0.0.1"}
        assert parse_iso(paused["127.0.0.1"]) > utcnow() + timedelta(minutes=100)
        due = to_iso(utcnow() - timedelta(minutes=1))
        await db.write_one(
            "UPDATE fetch_job SET not_before = :due WHERE status = 'QUEUED'", {"due": due}
        )
        assert await claims.claim_due(10, 2) == [], "the neighbour, due, waits for the host"
        row = await db.fetchone(
            "SELECT j.interval_seconds, j.interval_reason FROM fetch_job j "
            "JOIN content_sources s ON s.id = j.content_source_id "
            "WHERE s.url = :url AND j.status = 'QUEUED'",
            {"url": limited},
        )
        assert row is not None
        assert (row[0], row[1]) == (7200.0, "publisher hint")


async def test_requests_to_one_host_wait_their_turn_and_are_counted(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    """Fetches started together by hand keep host_min_gap_seconds between their requests
    (one process here; the farm test has three), each one held counted in the metric."""
    arrivals: list[float] = []

    async def noted(request: web.Request) -> web.Response:
        arrivals.append(asyncio.get_running_loop().time())
        return web.Response(text=BODY, content_type="application/rss+xml")

    urls = [feed_server.route(f"/f{n}", noted) for n in range(3)]
    config = make_config(tmp_path, urls, database=str(db_target), host_min_gap_seconds=0.3)
    held = "rssd_host_politeness_held_total"
    held_before = metrics.enable().get_sample_value(held) or 0.0
    async with asyncio.timeout(60), daemon_session(config) as db, Fetcher(config) as fetcher:
        pipeline = Pipeline(db, fetcher, ClaimRepo(db, "test"))
        sources = await SourceRepo(db).list()
        reports = await asyncio.gather(*(pipeline.run(source) for source in sources))
    assert [report.status for report in reports] == [FetchJobStatus.COMPLETED] * 3
    arrivals.sort()
    assert min(b - a for a, b in pairwise(arrivals)) >= 0.3 - 0.1, arrivals
    assert (metrics.enable().get_sample_value(held) or 0.0) - held_before >= 2


async def test_a_feed_fetched_in_its_quiet_hours_is_next_due_at_their_end(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    """A feed whose 24 posts of the last month were all published in four hours of the day
    (12 to 16 hours from now): fetched now, in the hours it never posts in, its next job
    waits for the first of them, queued with the reason "quiet hours", as ``rssd status``
    shows it."""
    now = utcnow()
    posting = (now + timedelta(hours=12)).replace(minute=30, second=0, microsecond=0)
    items = [
        {
            "guid": f"urn:{day}",
            "title": f"Post {day}",
            "pubDate": format_datetime(
                posting - timedelta(days=day) + timedelta(hours=day % 4), usegmt=True
            ),
        }
        for day in range(1, 25)
    ]
    url = feed_server.static("/daily-at-one-hour", rss(items))
    config = make_config(tmp_path, [url], database=str(db_target))
    await fetch_all(config)
    db = await open_database(db_target)
    try:
        row = await db.fetchone(
            "SELECT j.not_before, j.interval_reason FROM fetch_job j "
            "JOIN content_sources s ON s.id = j.content_source_id "
            "WHERE s.url = :url AND j.status = 'QUEUED'",
            {"url": url},
        )
    finally:
        await db.close()
    assert row is not None
    start = posting.replace(minute=0)  # the start of the first hour it posts in
    assert row[1] == "quiet hours"
    # At the hour's start, spread by up to a tenth of the interval (~94 min: a post every
    # 1.25 days).
    assert start <= parse_iso(row[0]) <= start + timedelta(minutes=15)
