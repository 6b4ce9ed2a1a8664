"""Three daemons on one PostgreSQL database, every feed on one loopback host (issue 24).

The farm records when each request arrives. Asserted: no two requests to the host start
less than host_min_gap_seconds apart, whichever daemons sent them (the turn is taken in
the database, on its clock: rssd/repo/hosts.py); never more than max_per_host in flight
at once (the slots still hold); and a feed posting every second is fetched more often than
silent ones, with a minimum interval of a second for the test.

The gap is measured where the requests arrive, so it carries the hop from the database's
turn to the socket: TOLERANCE allows for that jitter (milliseconds on loopback), far below
the gap itself, so a daemon ignoring its turn (starts a few milliseconds apart) still fails.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime
from itertools import pairwise
from pathlib import Path

import pytest
from aiohttp import web

from rssd.clock import now_iso
from rssd.models.config import load_config
from rssd.repo.claims import ClaimRepo
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.conftest import rss
from tests.support.config import write_config
from tests.support.loopback import serve
from tests.support.postgres import fresh_database
from tests.support.process import Daemons

pytestmark = pytest.mark.slow

GAP = 0.5
TOLERANCE = 0.1
MAX_PER_HOST = 2
#: Each answer takes this long: requests overlap, so the slots are what keeps them at two.
SLOW = 1.2
SILENT = 4
FAST_FETCHES = 4
WAIT = 90.0


class Farm:
    """One fast feed (an item a second, the newest dated now) and silent ones (two items
    ten days old), all on 127.0.0.1; every request's arrival time and concurrency noted."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.fetches: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.enough = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def handler(self, request: web.Request) -> web.Response:
        self.starts.append(time.monotonic())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(SLOW)
            name = request.match_info["name"]
            self.fetches[name] += 1
            if self.fetches["fast"] >= FAST_FETCHES:
                self.enough.set()
            now = int(time.time())
            ages = range(20) if name == "fast" else (10 * 86400, 10 * 86400 + 3600)
            items = [
                {
                    "guid": f"{name}-{now - age}",
                    "title": f"{name} {now - age}",
                    "pubDate": format_datetime(datetime.fromtimestamp(now - age, UTC)),
                }
                for age in ages
            ]
            return web.Response(text=rss(items), content_type="application/rss+xml")
        finally:
            self.in_flight -= 1

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}.xml"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}.xml", self.handler)
        self._runner, self.port = await serve(app)

    async def stop(self) -> None:
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


async def test_three_daemons_keep_the_host_gap_and_poll_by_posting_rate(
    farm: Farm, daemons: Daemons, tmp_path: Path
) -> None:
    names = ["fast", *(f"silent{n}" for n in range(SILENT))]
    async with fresh_database() as pg_url:
        config = write_config(
            tmp_path / "config.toml",
            [farm.url(name) for name in names],
            database=pg_url,
            host_min_gap_seconds=GAP,
            max_per_host=MAX_PER_HOST,
            min_interval_minutes=1 / 60,  # a second
            max_interval_minutes=0.5,  # 30 s: a silent feed is not fetched twice here
            shutdown_grace_seconds=1,
        )
        # Every feed due at once when the daemons start (no spreading of new feeds), so
        # all of them compete for the one host from the first second.
        db = await open_database(pg_url)
        try:
            await SourceRepo(db).sync(load_config(config))
            due = now_iso()
            await ClaimRepo(db, "test").queue_missing(
                {source.id: due for source in await SourceRepo(db).list()}
            )
        finally:
            await db.close()
        started = [await daemons.start(config) for _ in range(3)]
        for daemon in started:
            await daemon.wait_for("daemon.ready", deadline=WAIT)
        async with asyncio.timeout(WAIT):
            await farm.enough.wait()
        for daemon in started:
            assert await daemon.stop() == 0, daemon.log()
        sent_by = {daemon.pid: len(daemon.all("fetch.completed")) for daemon in started}

    starts = sorted(farm.starts)
    gaps = [later - earlier for earlier, later in pairwise(starts)]
    print(f"gaps {min(gaps):.3f}..{max(gaps):.3f} s, fetches {dict(farm.fetches)}, by {sent_by}")
    assert min(gaps) >= GAP - TOLERANCE, (gaps, sent_by)
    assert farm.max_in_flight <= MAX_PER_HOST, farm.max_in_flight
    assert farm.fetches["fast"] >= FAST_FETCHES
    silent = [farm.fetches[name] for name in names[1:]]
    assert max(silent) < farm.fetches["fast"], farm.fetches
