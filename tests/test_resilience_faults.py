"""Faults around rssd rather than in a feed: another process holding the database's write
lock, kill -9 at random moments, a full disk. Afterwards the database is intact and nothing
that was reported stored is missing (``check_invariants``)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from rssd.daemon.pipeline import Pipeline
from rssd.daemon.startup import daemon_session
from rssd.fetch.fetcher import Fetcher
from rssd.fetch.parse import ParsePool
from rssd.models.config import load_config
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer, Handler, rss
from tests.support.config import write_config
from tests.support.process import WAIT, Daemon, Daemons, run_rssd
from tests.support.resilience import (
    GOOD_ITEMS,
    active_jobs,
    check_invariants,
    good_feed,
    integrity,
    read_results,
    run_feeds,
)

LOCKER = """
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
db.execute("BEGIN IMMEDIATE")
print(json.dumps({"message": "locked"}), flush=True)
sys.stdin.readline()
db.execute("COMMIT")
print(json.dumps({"message": "released"}), flush=True)
"""


class Locker:
    """Another process that takes the database's write lock (BEGIN IMMEDIATE) and holds it
    until ``release()``."""

    def __init__(self, daemons: Daemons, database: Path) -> None:
        self.daemons = daemons
        self.database = database
        self.locked = asyncio.Event()
        self.process: Daemon | None = None

    async def start(self) -> None:
        self.process = await self.daemons.spawn(
            argv=[sys.executable, "-c", LOCKER, str(self.database)], stdin=True
        )
        await self.process.wait_for("locked")
        self.locked.set()

    async def release(self) -> None:
        assert self.process is not None
        self.process.send("release\n")
        await self.process.wait_for("released")
        assert await self.process.wait_exit() == 0, self.process.log()


def held_feeds(server: FeedServer, locker: Locker, count: int) -> list[str]:
    """Feeds whose answers wait until every one was requested (so every job is ONGOING
    already) and then until the locker holds the database's write lock: the fetches' next
    writes (posts + COMPLETED) meet a locked database."""
    started: list[asyncio.Task[None]] = []
    arrived = 0

    def handler(path: str) -> Handler:
        body = rss([{"title": f"{path} {i}", "guid": f"urn:{path}:{i}"} for i in range(GOOD_ITEMS)])

        async def serve(request: web.Request) -> web.StreamResponse:
            nonlocal arrived
            arrived += 1
            if arrived == count:
                started.append(asyncio.create_task(locker.start()))
            await locker.locked.wait()
            return web.Response(text=body, content_type="application/rss+xml")

        return serve

    return [server.route(f"/held{i}", handler(f"held{i}")) for i in range(count)]


def signal_on_call(
    monkeypatch: pytest.MonkeyPatch, names: tuple[str, ...], after: asyncio.Event
) -> asyncio.Event:
    """An event set when, once ``after`` is set, rssd calls one of ``FetchJobRepo.<names>``
    (which then runs as ever): how the test knows a write has been issued into the held
    lock, or a write has given up on it (``mark_failed``)."""
    called = asyncio.Event()

    def wrap(name: str) -> None:
        original = getattr(FetchJobRepo, name)

        async def wrapper(self: FetchJobRepo, *args: Any, **kwargs: Any) -> Any:
            if after.is_set():
                called.set()
            return await original(self, *args, **kwargs)

        monkeypatch.setattr(FetchJobRepo, name, wrapper)

    for name in names:
        wrap(name)
    return called


async def test_a_writer_in_another_process_holding_the_lock_shortly(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Released while a write waits for it (within busy_timeout): every fetch completes."""
    database = tmp_path / "rssd.sqlite3"
    locker = Locker(daemons, database)
    urls = held_feeds(feed_server, locker, 8)
    # The writes left once the lock is held: each fetch's posts + COMPLETED.
    writing = signal_on_call(monkeypatch, ("mark_completed",), after=locker.locked)
    run = asyncio.create_task(run_feeds(tmp_path, urls, max_per_host=8))
    await asyncio.wait_for(writing.wait(), WAIT)  # a write is issued; the lock is held
    await locker.release()
    result = await run
    for url in urls:
        result.assert_completed(url, GOOD_ITEMS)
    check_invariants(database)


async def test_a_writer_holding_the_lock_past_busy_timeout(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held until a write gave up (busy_timeout): the fetches that cannot write fail
    cleanly (``internal``, nothing half-written, no job left active), and the next run
    stores everything."""
    database = tmp_path / "rssd.sqlite3"
    locker = Locker(daemons, database)
    urls = held_feeds(feed_server, locker, 4)
    # mark_failed is only called once a write has failed on the lock (busy_timeout).
    gave_up = signal_on_call(monkeypatch, ("mark_failed",), after=locker.locked)
    run = asyncio.create_task(run_feeds(tmp_path, urls, max_per_host=8))
    await asyncio.wait_for(gave_up.wait(), WAIT)
    await locker.release()  # the failure can now be recorded (Pipeline._fail retries)
    first = await run
    assert active_jobs(database) == []
    failed = [url for url in urls if first.job(url).status == "FAILED"]
    assert failed, "no write met the lock"
    for url in urls:
        if url in failed:
            job = first.assert_failed(url, "internal")
            assert "locked" in (job.error_message or ""), job
        else:
            first.assert_completed(url, GOOD_ITEMS)  # its write came after the release
    check_invariants(database)
    second = await run_feeds(tmp_path, urls)
    for url in urls:
        second.assert_completed(url, GOOD_ITEMS)
    check_invariants(database)


# -- kill -9 --------------------------------------------------------------------------------

KILLS = 20
BUSY_FEEDS = 50

VICTIM = """
import json, os, sys
import rssd.cli
print(json.dumps({"message": "victim.ready"}), flush=True)
sys.stdin.readline()
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
sys.exit(rssd.cli.main(sys.argv[1:]))
"""


class Victim:
    """``rssd run --once`` in a process that has already imported rssd and waits for "go":
    the kill lands in rssd's own work, not in the interpreter's start-up."""

    def __init__(self, process: Daemon) -> None:
        self.process = process
        self.started = 0.0

    @classmethod
    async def spawn(cls, daemons: Daemons, config: Path) -> Victim:
        argv = [sys.executable, "-c", VICTIM, "run", "--once", "-c", str(config)]
        process = await daemons.spawn(argv=argv, stdin=True)
        await process.wait_for("victim.ready")
        return cls(process)

    def go(self) -> None:
        self.process.send("go\n")
        self.started = time.monotonic()

    async def wait(self) -> int:
        code = await self.process.exited()
        with contextlib.suppress(ProcessLookupError):  # its parse workers, if left behind
            os.killpg(self.process.pid, signal.SIGKILL)
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)  # the daemon only, as the OOM killer would


class BusyFeeds:
    """Feeds that gain 4 new posts on every request (10 per document) and, while ``slow``,
    answer after a random pause: every run writes, and the writes spread over the run."""

    def __init__(self, server: FeedServer, count: int) -> None:
        self.hits: dict[int, int] = {}
        self.slow = True
        self.rng = random.Random(9)
        self.urls = [server.route(f"/busy/{i}", self._handler(i)) for i in range(count)]

    def _handler(self, index: int) -> Handler:
        async def serve(request: web.Request) -> web.StreamResponse:
            self.hits[index] = self.hits.get(index, 0) + 1
            head = self.hits[index] * 4
            items = [
                {"title": f"feed {index} post {n}", "guid": f"urn:{index}:{n}",
                 "description": f"<p>post {n} of feed {index}</p>"}
                for n in range(head, head + 10)
            ]  # fmt: skip
            if self.slow:
                await asyncio.sleep(self.rng.uniform(0, 0.15))
            return web.Response(text=rss(items), content_type="application/rss+xml")

        return serve


async def restart(config: Path, pool: ParsePool) -> int:
    """The restart after a kill: rssd's start-up (lock, check, recovery, sync) and one
    fetch of every feed, as ``run --once`` does; returns how many fetches completed."""
    cfg = load_config(config)
    async with daemon_session(cfg) as db:
        sources = await SourceRepo(db).list(enabled_only=True)
        async with Fetcher(cfg, parse_pool=pool) as fetcher:
            pipeline = Pipeline(db, fetcher)
            await pipeline.preload()
            reports = await asyncio.gather(*(pipeline.run(source) for source in sources))
    return sum(report.status == "COMPLETED" for report in reports)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_kill_9_at_20_random_moments_loses_nothing(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons
) -> None:
    feeds = BusyFeeds(feed_server, BUSY_FEEDS)
    database = tmp_path / "rssd.sqlite3"
    config = write_config(
        tmp_path / "config.toml", feeds.urls, database="rssd.sqlite3", max_per_host=20
    )
    rng = random.Random(int(os.environ.get("RSSD_KILL_SEED", "20")))
    pool = ParsePool(timeout=20)
    killed = 0
    try:
        async with asyncio.timeout(600):  # a hang guard (pytest-timeout is 900 here)
            victim = await Victim.spawn(daemons, config)
            victim.go()
            assert await victim.wait() == 0
            span = time.monotonic() - victim.started  # how long a whole run takes here
            check_invariants(database)
            victim = await Victim.spawn(daemons, config)
            moment = 0
            while killed < KILLS:  # a kill that comes after the run ended is not counted
                moment += 1
                assert moment <= 3 * KILLS, f"only {killed} of {moment - 1} kills hit a run"
                victim.go()
                await asyncio.sleep(rng.uniform(0.05, max(0.1, span)))
                victim.kill()
                code = await victim.wait()
                killed += code == -signal.SIGKILL
                assert code in (0, -signal.SIGKILL), f"moment {moment}: exit {code}"
                check_invariants(database)
                # the next victim imports while this restart runs
                spawning = asyncio.create_task(Victim.spawn(daemons, config))
                feeds.slow = False  # the restart only has to prove the daemon works again
                completed = await restart(config, pool)
                feeds.slow = True
                assert completed == BUSY_FEEDS, f"moment {moment}: restart completed {completed}"
                assert active_jobs(database) == [], f"moment {moment}"
                check_invariants(database)
                assert (tmp_path / "rssd.sqlite3.lock").read_text().strip() == "clean"
                victim = await spawning
            victim.kill()
            await victim.wait()
    finally:
        pool.close()
    assert integrity(database) == "ok"


# -- a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted for the test (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("disk full: mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"disk full: cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


#: Items per feed in the big round: 4 feeds of them must not fit in the 256 KiB left, and
#: must fit in the small disk, WAL and indexes included (100 did in 2 MiB until schema
#: version 6 added two indexes on posts). The shutdown checkpoint needs the WAL (~1.1 MB)
#: and the main file it grows (~1.1 MB) on disk at once: since the search index (schema
#: version 13) that is more than 2 MiB, hence 3 MiB.
BIG_ITEMS = 85


def fill(directory: Path, leave: int) -> Path:
    """Fill the filesystem of ``directory`` until at most ``leave`` bytes are free."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (65536, 4096, 512, 1):
            while True:
                stats = os.statvfs(directory)
                if stats.f_bavail * stats.f_frsize - size < leave:
                    break
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


async def test_a_full_disk_fails_cleanly_and_loses_nothing(
    feed_server: FeedServer, tmp_path: Path, small_disk: Path
) -> None:
    """The disk fills up under the database: with a little room left (start-up works, the
    posts do not fit) and with none. rssd records ``internal`` or stops with a clear error
    (exit 1, no traceback); the database stays intact; once there is room again, the next
    run stores everything."""
    big = False

    def feed(index: int) -> Handler:
        async def serve(request: web.Request) -> web.StreamResponse:
            count = BIG_ITEMS if big else 2
            items = [
                {"title": f"post {n}", "guid": f"urn:{index}:{n}",
                 "description": f"<p>{'lorem ipsum ' * 120}</p>"}
                for n in range(count)
            ]  # fmt: skip
            return web.Response(text=rss(items), content_type="application/rss+xml")

        return serve

    urls = [feed_server.route(f"/f{i}", feed(i)) for i in range(4)]
    database = small_disk / "rssd.sqlite3"
    config = write_config(tmp_path / "config.toml", urls, database=str(database))
    first = await run_feeds(small_disk, urls)
    for url in urls:
        first.assert_completed(url, 2)
    big = True  # ~500 KB of new posts now: more than the room left, less than the disk
    outcomes = []
    for leave in (256 * 1024, 0):
        filler = fill(small_disk, leave)
        finished = await run_rssd("run", "--once", "-c", config)
        assert not finished.timed_out
        assert "Traceback" not in finished.stderr, finished.stderr
        filler.unlink()  # room again (sqlite3 itself needs some to open the file and check)
        if finished.returncode == 1:  # a clear stop, naming the database
            assert finished.stderr == "", finished.stderr  # the daemon writes only JSON lines
            assert f"cannot use database {database}" in finished.stdout, finished.stdout
        else:
            assert finished.returncode == 0, finished.stderr
            after = read_results(database)
            for url in urls:
                job = after.job(url)
                assert job.status in ("FAILED", "COMPLETED"), job
                if job.status == "FAILED":
                    assert job.error_code == "internal", job
                    assert "database or disk is full" in (job.error_message or ""), job
            assert active_jobs(database) == []
        outcomes.append(finished.returncode)
        assert integrity(database) == "ok"
        check_invariants(database)
    good = good_feed(feed_server)
    result = await run_feeds(small_disk, [*urls, good])
    assert active_jobs(database) == []
    for url in urls:
        result.assert_completed(url, BIG_ITEMS)
    result.assert_good(good)
    check_invariants(database)
    # With room for start-up, the fetches fail ``internal`` (exit 0); with none, rssd stops
    # at start-up naming the database (exit 1; how far start-up gets depends on SQLite).
    assert outcomes[0] == 0, outcomes
