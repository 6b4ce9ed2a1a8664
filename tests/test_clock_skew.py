"""A daemon whose clock runs six days ahead, on PostgreSQL beside honest ones.

Its clock is shifted in-process: ``rssd.clock``'s ``datetime`` is replaced, so every
``utcnow()`` of rssd runs six days ahead while the database's clock does not move.
Asserted: it prunes nothing the retention keeps, schedules no fetch and no retry days
ahead, claims no job that is not due, does not disable an endpoint that failed once, and
says ``clock.skew``.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import rssd.clock
from rssd import metrics
from rssd.clock import parse_iso, to_iso
from rssd.commands.prune import prune
from rssd.daemon.delivery import DeliveryLoop
from rssd.daemon.housekeeping import apply_retention
from rssd.daemon.pipeline import Pipeline
from rssd.daemon.reconcile import reconcile
from rssd.daemon.skew import SKEW_BOUND_SECONDS, check_skew
from rssd.daemon.startup import sync_sources
from rssd.fetch.fetcher import Fetcher
from rssd.models.config import Config
from rssd.models.dto import FetchMeta, PostCreate
from rssd.repo.claims import ClaimRepo
from rssd.repo.db import Database
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.sources import SourceRepo
from rssd.repo.users import UserRepo
from rssd.webhooks.sender import Sender
from tests.conftest import FeedServer, rss
from tests.support.jobs import ongoing_job
from tests.support.webhooks import Receiver, make_config, user

#: PostgreSQL only: on SQLite (one machine) the local clock is the only clock there is.
pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

AHEAD = timedelta(days=6)
#: Far enough from "six days ahead" that no jitter or retry schedule can be confused with it.
NEAR = timedelta(hours=2)


class _Ahead(datetime):
    """``datetime`` whose ``now`` runs AHEAD: what a machine with a wrong clock reads."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _Ahead:
        moment = datetime.now(tz) + AHEAD
        return cls.fromtimestamp(moment.timestamp(), tz)


def run_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rssd.clock, "datetime", _Ahead)
    assert rssd.clock.utcnow() - datetime.now(UTC) > AHEAD - timedelta(minutes=1)


async def database_now(db: Database) -> datetime:
    row = await db.fetchone("SELECT now() AS now")
    assert row is not None
    return parse_iso(row["now"])


async def with_posts(db: Database, config: Config) -> None:
    """The config synced, and its first feed's three posts stored by an honest fetch."""
    await sync_sources(db, config)
    row = await db.fetchone("SELECT min(id) FROM content_sources")
    assert row is not None
    jobs = FetchJobRepo(db)
    job = await ongoing_job(db, row[0])
    posts = [
        PostCreate(external_id=f"id-{n}", title=f"Post {n}", content_hash=f"h{n}") for n in range(3)
    ]
    assert await jobs.mark_completed(job.id, FetchMeta(http_status=200), posts, b"")


def alice_config(tmp_path: Path, receiver: Receiver, feeds: list[str], **settings: Any) -> Config:
    config = make_config(
        tmp_path,
        feeds,
        [user("alice", receiver.url("alice"), feeds[:1], notify_backlog=True)],
        retry_seconds=[60.0] * 5,
    )
    return replace(config, **settings)


async def count(db: Database, table: str) -> int:
    row = await db.fetchone(f"SELECT count(*) FROM {table}")
    assert row is not None
    return int(row[0])


async def test_a_fast_clock_prunes_nothing_the_retention_keeps(
    db: Database,
    db_target: str,
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = alice_config(
        tmp_path, receiver, ["http://a.example/feed"], keep_posts_days=5, keep_fetch_jobs_days=1
    )
    await with_posts(db, config)
    run_ahead(monkeypatch)
    await apply_retention(db, config)
    # ``rssd prune`` too (a dry run: what it would delete).
    report = await prune(replace(config, database=db_target), dry_run=True, vacuum_after=False)
    assert await count(db, "posts") == 3
    assert report.posts == 0
    assert abs(parse_iso(report.jobs_before) - (await database_now(db) - timedelta(days=1))) < NEAR


async def test_a_fast_clock_schedules_and_claims_by_the_database_clock(
    db: Database,
    tmp_path: Path,
    receiver: Receiver,
    feed_server: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fetched = feed_server.static("/feed", rss([{"guid": "urn:1", "title": "One"}]))
    later = feed_server.static("/later", rss([{"guid": "urn:2", "title": "Two"}]))
    config = alice_config(tmp_path, receiver, [fetched, later])
    await sync_sources(db, config)
    claims = ClaimRepo(db, "fast")
    await reconcile(db, claims, random.Random(1))
    # By the database's clock, the first feed is due, the second one is due in an hour.
    now = await database_now(db)
    for url, due in ((fetched, now - timedelta(seconds=1)), (later, now + timedelta(hours=1))):
        await db.write_one(
            "UPDATE fetch_job SET not_before = :due WHERE content_source_id = "
            "(SELECT id FROM content_sources WHERE url = :url)",
            {"due": to_iso(due), "url": url},
        )
    run_ahead(monkeypatch)
    assert await claims.count_due() == 1
    async with Fetcher(config) as fetcher:
        pipeline = Pipeline(db, fetcher, claims)
        claimed = await claims.claim_due(10, 2)
        assert [claim.source.url for claim in claimed] == [fetched]
        await pipeline.run_claim(claimed[0])
    assert await claims.claim_due(10, 2) == []
    # Re-planned from the database's clock: an interval (an hour) ahead, not six days.
    await reconcile(db, claims, random.Random(1))
    rows = await db.fetchall(
        "SELECT not_before FROM fetch_job WHERE status = 'QUEUED' ORDER BY not_before"
    )
    now = await database_now(db)
    assert len(rows) == 2
    for row in rows:
        assert parse_iso(row[0]) - now < NEAR
    sources = await SourceRepo(db).list()
    assert len(sources) == 2


async def test_a_fast_clock_neither_postpones_retries_nor_disables_an_endpoint(
    db: Database, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(_: web.Request, __: int) -> web.StreamResponse:
        return web.Response(status=500)

    receiver.replies["alice"] = broken
    config = alice_config(tmp_path, receiver, ["http://a.example/feed"])
    await with_posts(db, config)
    # One failure, at the database's time: the endpoint is failing since now.
    await db.write_one(
        "UPDATE users SET failing_since = now(), last_error_at = now(), last_error = 'HTTP 500'"
    )
    run_ahead(monkeypatch)
    async with Sender(config.webhooks, config.user_agent) as sender:
        await DeliveryLoop(db, config, sender).run_once()
    assert receiver.attempts == {"alice": 1}
    row = await db.fetchone("SELECT next_attempt_at, attempts FROM deliveries")
    assert row is not None
    assert row[1] == 1
    assert parse_iso(row[0]) - await database_now(db) < NEAR
    alice = await UserRepo(db).get("alice")
    assert alice is not None
    assert alice.disabled_reason is None
    assert alice.failing_since is not None
    assert abs(parse_iso(alice.failing_since) - await database_now(db)) < NEAR


async def test_clock_skew_is_measured_against_the_database(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What check_skew finds (and logs as ``clock.skew`` beyond the bound, and puts in
    rssd_clock_skew_seconds): nothing much on an honest machine, six days on this one."""
    metrics.enable()
    assert abs(await check_skew(db)) < SKEW_BOUND_SECONDS
    run_ahead(monkeypatch)
    skew = await check_skew(db)
    assert skew < -AHEAD.total_seconds() + 60
    assert metrics.enable().get_sample_value("rssd_clock_skew_seconds") == skew
