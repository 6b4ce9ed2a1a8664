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

import pytest
from aiohttp import web

from rssd.daemon.pipeline import Pipeline
from rssd.daemon.startup import daemon_session
from rssd.fetch.fetcher import Fetcher
from rssd.fetch.parse import ParsePool
from rssd.models.config import load_config
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer, Handler, rss
from tests.test_resilience_support import (
    GOOD_ITEMS,
    active_jobs,
    check_invariants,
    good_feed,
    integrity,
    read_results,
    run_feeds,
    run_rssd,
    write_config,
)

LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
print("released", flush=True)
"""


class Locker:
    """Another process that takes the database's write lock (BEGIN IMMEDIATE) and holds it."""

    def __init__(self, database: Path, seconds: float) -> None:
        self.database = database
        self.seconds = seconds
        self.locked = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self.output = b""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LOCKER, str(self.database), str(self.seconds),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.output = await self.proc.stdout.readline()
        assert self.output == b"locked\n"
        self.locked.set()

    async def finish(self) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        rest = await self.proc.stdout.read()
        assert await self.proc.wait() == 0
        return self.output + rest


def held_feeds(server: FeedServer, locker: Locker, count: int) -> list[str]:
    """Feeds whose first request starts the locker; every answer waits until it holds the
    lock, so the fetches' writes (posts + COMPLETED) meet a locked database."""
    started: list[asyncio.Task[None]] = []

    def handler(path: str) -> Handler:
        body = rss([{"title": f"{path} {i}", "guid": f"urn:{path}:{i}"} for i in range(GOOD_ITEMS)])

        async def serve(request: web.Request) -> web.StreamResponse:
            if not started:
                started.append(asyncio.create_task(locker.start()))
            await locker.locked.wait()
            return web.Response(text=body, content_type="application/rss+xml")

        return serve

    return [server.route(f"/held{i}", handler(f"held{i}")) for i in range(count)]


async def test_a_writer_in_another_process_holding_the_lock_for_3s(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """Shorter than busy_timeout (10 s): the writes wait, every fetch completes."""
    locker = Locker(tmp_path / "rssd.sqlite3", 3)
    urls = held_feeds(feed_server, locker, 8)
    result = await run_feeds(tmp_path, urls, max_per_host=8)
    assert b"released" in await locker.finish()
    for url in urls:
        result.assert_completed(url, GOOD_ITEMS)
    check_invariants(tmp_path / "rssd.sqlite3")


async def test_a_writer_holding_the_lock_past_busy_timeout(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """Longer than busy_timeout: the fetches that cannot write fail cleanly (``internal``,
    nothing half-written, no job left active), and the next run stores everything."""
    locker = Locker(tmp_path / "rssd.sqlite3", 12)
    urls = held_feeds(feed_server, locker, 4)
    first = await run_feeds(tmp_path, urls, max_per_host=8)
    await locker.finish()
    assert active_jobs(tmp_path / "rssd.sqlite3") == []
    failed = [url for url in urls if first.job(url).status == "FAILED"]
    assert failed, "no write met the lock"
    for url in failed:
        job = first.assert_failed(url, "internal")
        assert "locked" in (job.error_message or ""), job
    check_invariants(tmp_path / "rssd.sqlite3")
    second = await run_feeds(tmp_path, urls)
    for url in urls:
        second.assert_completed(url, GOOD_ITEMS)
    check_invariants(tmp_path / "rssd.sqlite3")


# -- kill -9 --------------------------------------------------------------------------------

KILLS = 20
BUSY_FEEDS = 50

VICTIM = """
import os, sys
import rssd.cli
print("ready", flush=True)
sys.stdin.readline()
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
sys.exit(rssd.cli.main(sys.argv[1:]))
"""


class Victim:
    """``rssd run --once`` in a process that has already imported rssd and waits for "go":
    the kill lands in rssd's own work, not in the interpreter's start-up."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.started = 0.0

    @classmethod
    async def spawn(cls, config: Path) -> Victim:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", VICTIM, "run", "--once", "-c", str(config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"ready\n"
        return cls(proc)

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.started = time.monotonic()

    async def wait(self) -> int:
        code = await self.proc.wait()
        with contextlib.suppress(ProcessLookupError):  # its parse workers, if left behind
            os.killpg(self.proc.pid, signal.SIGKILL)
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)  # the daemon only, as the OOM killer would


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
async def test_kill_9_at_20_random_moments_loses_nothing(
    feed_server: FeedServer, tmp_path: Path
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
        async with asyncio.timeout(240):
            victim = await Victim.spawn(config)
            victim.go()
            assert await victim.wait() == 0
            span = time.monotonic() - victim.started  # how long a whole run takes here
            check_invariants(database)
            victim = await Victim.spawn(config)
            for moment in range(KILLS):
                victim.go()
                await asyncio.sleep(rng.uniform(0.05, max(0.1, span)))
                victim.kill()
                code = await victim.wait()
                killed += code == -signal.SIGKILL
                assert code in (0, -signal.SIGKILL), f"moment {moment}: exit {code}"
                check_invariants(database)
                # the next victim imports while this restart runs
                spawning = asyncio.create_task(Victim.spawn(config))
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
    assert killed >= KILLS // 2, f"only {killed} of {KILLS} kills landed during a run"
    assert integrity(database) == "ok"


# -- a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for the test (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("disk full: mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"disk full: cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False, timeout=30).returncode:
            subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


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
            count = 100 if big else 2
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
    big = True  # ~600 KB of new posts now: more than the room left, less than the disk
    outcomes = []
    for leave in (256 * 1024, 0):
        filler = fill(small_disk, leave)
        finished = await run_rssd("run", "--once", "-c", str(config), timeout=120)
        assert not finished.timed_out
        assert "Traceback" not in finished.stderr, finished.stderr
        filler.unlink()  # room again (sqlite3 itself needs some to open the file and check)
        if finished.returncode == 1:  # a clear stop, naming the database
            assert f"rssd: cannot use database {database}" in finished.stderr, finished.stderr
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
        result.assert_completed(url, 100)
    result.assert_good(good)
    check_invariants(database)
    # With room for start-up, the fetches fail ``internal`` (exit 0); with none, rssd stops
    # at start-up naming the database (exit 1; how far start-up gets depends on SQLite).
    assert outcomes[0] == 0, outcomes
