"""Three daemons on one PostgreSQL database, one killed -9: the work queue across processes.

A loopback farm on three addresses (three hosts to the daemons) counts the requests in
flight per feed and per host. Asserted: every feed fetched in every interval, never two
fetches of one feed at once, never more than max_per_host to one host from all daemons
together, the killed daemon's jobs taken back (``interrupted``) and fetched again within the
60 s the lease promises, and no duplicate posts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from aiohttp import web

from rssd.clock import utcnow
from rssd.models.config import load_config
from rssd.repo.config_versions import config_hash
from tests.conftest import rss
from tests.support.commands import cli
from tests.support.config import Feed, write_config
from tests.support.loopback import listen
from tests.support.postgres import fresh_database
from tests.support.process import Daemon, Daemons

pytestmark = pytest.mark.slow

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
FEEDS_PER_HOST = 6
MAX_PER_HOST = 2
ITEMS = 3
#: Hang guard for each wait (an interval is a minute; the first fetches spread over 10 s).
WAIT = 150.0
RECOVERY = 60.0


class Farm:
    """Feeds on several loopback addresses; every request counted while in flight."""

    def __init__(self) -> None:
        self.in_flight: Counter[str] = Counter()
        self.host_in_flight: Counter[str] = Counter()
        self.max_feed = 0
        self.max_host = 0
        self.fetches: Counter[str] = Counter()
        self.hold = asyncio.Event()  # cleared: requests wait (so that daemons hold jobs)
        self.hold.set()
        self.urls: list[str] = []
        self._runner: web.AppRunner | None = None

    async def handler(self, request: web.Request) -> web.StreamResponse:
        feed = f"{request.host.split(':')[0]}{request.path}"
        host = request.host.split(":")[0]
        self.in_flight[feed] += 1
        self.host_in_flight[host] += 1
        self.max_feed = max(self.max_feed, self.in_flight[feed])
        self.max_host = max(self.max_host, self.host_in_flight[host])
        try:
            await self.hold.wait()
            await asyncio.sleep(0.05)  # long enough for overlaps to show, if they happen
            self.fetches[feed] += 1
            items = [
                {"title": f"{feed} {n}", "guid": f"{feed}#{n}", "link": f"http://{feed}/{n}"}
                for n in range(ITEMS)
            ]
            return web.Response(text=rss(items), content_type="application/rss+xml")
        finally:
            self.in_flight[feed] -= 1
            self.host_in_flight[host] -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self.handler)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        for host in HOSTS:
            port = await listen(self._runner, host)
            self.urls += [f"http://{host}:{port}/f{n}.xml" for n in range(FEEDS_PER_HOST)]

    def key(self, url: str) -> str:
        host, _, rest = url.removeprefix("http://").partition(":")
        return f"{host}/{rest.split('/', 1)[1]}"

    async def stop(self) -> None:
        self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def farm() -> AsyncIterator[Farm]:
    server = Farm()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


async def rows(url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(sql, params)
        return list(await cursor.fetchall())


async def until(what: str, check: object, deadline: float = WAIT) -> None:
    """Poll an async predicate (another process's state); fail, not hang, at the deadline."""
    assert callable(check)
    try:
        async with asyncio.timeout(deadline):
            while not await check():  # noqa: ASYNC110 - other processes' state, no Event
                await asyncio.sleep(0.25)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def test_three_daemons_share_the_work_and_recover_a_killed_one(
    farm: Farm, pg_url: str, daemons: Daemons, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path / "config.toml",
        [{"url": url, "interval_minutes": 1, "timeout_seconds": 120} for url in farm.urls],
        database=pg_url,
        max_per_host=MAX_PER_HOST,
        max_concurrency=4,
        shutdown_grace_seconds=1,
    )
    farm.hold.clear()  # the first fetches wait: every daemon ends up holding some jobs
    started = [await daemons.start(config) for _ in range(3)]
    by_id: dict[str, Daemon] = {}
    for daemon in started:
        ready = daemon.events[await daemon.wait_for("daemon.ready", deadline=WAIT)]
        by_id[str(ready["daemon_id"])] = daemon

    async def every_slot_taken() -> bool:
        """Requests wait at the farm until every host has max_per_host in flight (what the
        cluster may send at most), held by at least two daemons."""
        if sum(farm.host_in_flight.values()) < MAX_PER_HOST * len(HOSTS):
            return False
        holders = await rows(
            pg_url, "SELECT DISTINCT claimed_by FROM fetch_job WHERE status = 'ONGOING'"
        )
        return len(holders) >= 2

    await until("every host's slots taken, by two daemons or more", every_slot_taken)
    # The window for a claim beyond the limit: every daemon's lease loop turns once more
    # (its heartbeat moves on), and its claim loop polled about ten times meanwhile.
    (slots_taken_at,) = (await rows(pg_url, "SELECT now()"))[0]

    async def every_daemon_beat_since() -> bool:
        beats = await rows(
            pg_url, "SELECT count(*) FROM daemons WHERE heartbeat_at > %s", slots_taken_at
        )
        return beats[0][0] == len(started)

    await until("every daemon's heartbeat with every slot taken", every_daemon_beat_since)
    assert farm.max_host <= MAX_PER_HOST, farm.max_host
    holders = await rows(
        pg_url,
        "SELECT claimed_by, array_agg(id ORDER BY id) FROM fetch_job WHERE status = 'ONGOING' "
        "GROUP BY claimed_by ORDER BY claimed_by",
    )
    victim_id, victim_jobs = str(holders[0][0]), list(holders[0][1])  # type: ignore[call-overload]
    victim = by_id[victim_id]
    await victim.crash()
    killed_at = utcnow()
    farm.hold.set()  # the survivors' fetches finish; the victim's die with its sockets

    async def recovered() -> bool:
        taken = await rows(
            pg_url,
            "SELECT count(*) FROM fetch_job WHERE id = ANY(%s) AND status = 'FAILED' "
            "AND error_code = 'interrupted'",
            victim_jobs,
        )
        refetched = await rows(
            pg_url,
            "SELECT count(DISTINCT j.content_source_id) FROM fetch_job j "
            "JOIN fetch_job lost ON lost.content_source_id = j.content_source_id "
            "WHERE lost.id = ANY(%s) AND j.id > lost.id AND j.status = 'COMPLETED'",
            victim_jobs,
        )
        return taken[0][0] == len(victim_jobs) and refetched[0][0] == len(victim_jobs)

    await until("the killed daemon's jobs to be taken back and fetched again", recovered)
    ended = await rows(
        pg_url, "SELECT max(ended_at) FROM fetch_job WHERE id = ANY(%s)", victim_jobs
    )
    taken_after = (ended[0][0] - killed_at).total_seconds()  # type: ignore[operator]
    assert taken_after < RECOVERY, f"jobs taken back {taken_after:.0f} s after the kill"

    # Every feed fetched in each interval: a second round, by the two survivors.
    first_round = Counter(farm.fetches)

    async def second_round() -> bool:
        return all(farm.fetches[farm.key(url)] > first_round[farm.key(url)] for url in farm.urls)

    await until("every feed fetched again an interval later", second_round)
    survivors = [daemon for daemon in started if daemon is not victim]
    status = await cli("status", "-c", config, "--json")
    assert status.code == 0, status.err
    listed = {row["pid"]: row for row in status.json()["daemons"]}
    assert {daemon.pid for daemon in survivors} <= listed.keys()
    assert not any(row["drift"] for row in listed.values())
    human = await cli("status", "-c", config)
    assert "DAEMON" in human.out and "HEARTBEAT" in human.out
    for daemon in survivors:
        assert await daemon.stop() == 0, daemon.log()

    assert farm.max_feed == 1, "two fetches of one feed at once"
    assert 1 <= farm.max_host <= MAX_PER_HOST, farm.max_host
    posts = await rows(
        pg_url,
        "SELECT count(*), count(DISTINCT (content_source_id, external_id)) FROM posts",
    )
    assert posts == [(len(farm.urls) * ITEMS, len(farm.urls) * ITEMS)]
    active = await rows(pg_url, "SELECT count(*) FROM fetch_job WHERE status = 'ONGOING'")
    assert active == [(0,)]
    queued = await rows(
        pg_url, "SELECT count(DISTINCT content_source_id) FROM fetch_job WHERE status = 'QUEUED'"
    )
    assert queued == [(len(farm.urls),)], "every feed's next fetch is on record"
    completed_by = await rows(
        pg_url, "SELECT DISTINCT claimed_by FROM fetch_job WHERE status = 'COMPLETED'"
    )
    assert len(completed_by) >= 2, "the work was shared"


async def test_a_daemon_with_an_older_config_does_not_undo_a_newer_sync(
    farm: Farm, pg_url: str, daemons: Daemons, tmp_path: Path
) -> None:
    """Two machines' copies of config.toml: once the newer one is synced, the older one
    (fewer feeds), even touched to the newest mtime of all, logs config.drift and leaves
    the feed list as the newer one made it; status flags the drifting daemon and names
    the keys its config differs in."""
    feeds: list[Feed] = [{"url": url, "interval_minutes": 60} for url in farm.urls[:4]]
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = write_config(tmp_path / "old" / "config.toml", feeds[:2], database=pg_url)
    new = write_config(tmp_path / "new" / "config.toml", feeds, database=pg_url)

    older = await daemons.start(old)
    await older.wait_for("daemon.ready")
    newer = await daemons.start(new)
    await newer.wait_for("daemon.ready")
    future = time.time() + 3600
    os.utime(old, (future, future))  # a stale file's mtime is no version
    os.kill(older.pid, signal.SIGHUP)
    at = await older.wait_for("config.drift", synced_hash=config_hash(load_config(new)))
    drift = older.events[at]
    assert drift["differs_in"] == [f"feeds[{url}]" for url in sorted(farm.urls[2:4])]
    enabled = await rows(pg_url, "SELECT count(*) FROM content_sources WHERE enabled = 1")
    assert enabled == [(4,)], "the older file disabled nothing"

    status = await cli("status", "-c", new, "--json")
    assert status.code == 0, status.err
    listed = {row["pid"]: row for row in status.json()["daemons"]}
    assert {pid: row["drift"] for pid, row in listed.items()} == {
        newer.pid: False,
        older.pid: True,
    }
    assert listed[older.pid]["differs_in"] == drift["differs_in"]
    # Every line of a daemon carries its id, from its start on: two daemons of one host
    # are told apart.
    ids = {listed[daemon.pid]["id"]: daemon for daemon in (older, newer)}
    for daemon_id, daemon in ids.items():
        first = daemon.find("sources.synced")
        assert first is not None
        assert all(e.get("daemon_id") == daemon_id for e in daemon.events[first:]), daemon.log()
    assert drift["daemon_id"] == listed[older.pid]["id"]
    for daemon in (newer, older):
        assert await daemon.stop() == 0, daemon.log()
