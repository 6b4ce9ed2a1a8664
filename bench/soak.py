"""The soak: ``rssd run`` (the service) for a long while over the loopback farm, 1% hostile.

    .venv/bin/python bench/soak.py                      # 10 minutes, 500 feeds
    .venv/bin/python bench/soak.py --minutes 2 --feeds 200

Not run in CI. Every feed is due every minute (``interval_minutes = 1``, the smallest rssd
allows), so in 10 minutes each is fetched ~10 times; every minute the farm's next epoch
gives 10% of the feeds new posts. About 1% of the feeds are hostile, one behaviour each:
a gzip bomb, a silent server, a trickle, an endless body, 500s, 429/503 with Retry-After,
410, a redirect loop, garbage, an HTML page, a runaway parse (a 50 KB <author>), a reset.

Every ``--sample`` seconds it prints the daemon's RSS (and its parse workers'), its open
file descriptors (/proc/PID/fd), the database and WAL sizes, and the row counts. At the
end: a summary with the drift of each figure between the first and the last third of the
run, the fetch outcomes from the database, then SIGTERM and the exit code. Memory and
descriptors should be flat; the database grows with what is stored (posts, and one
fetch_job row per attempt until ``keep_fetch_jobs_days`` prunes them: at least a day, so
a 10-minute soak sees no pruning, and the file grows by the rows it is given).

The daemon's JSON log goes to WORKDIR/rssd.log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import farm
from aiohttp import web

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- hostile feeds ---------------------------------------------------------------------------


def _rss(items: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>h</title>'
        f"<link>http://example.org/</link>{items}</channel></rss>"
    ).encode()


def _bomb() -> bytes:
    """~1 MB of gzip inflating to 1 GiB (one flushed block repeated; the trailer is not
    reached by a client that respects its cap, so it is left out)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + first + block * 1023


class Hostile:
    """The hostile feeds, ``/h/<n>`` on 127.0.0.1 (a port of their own). Each misbehaves
    differently on every request, going round KINDS, so that a few hostile feeds show every
    behaviour over the run."""

    KINDS = (
        "bomb", "silent", "trickle", "endless", "500", "429", "503", "410", "loop",
        "garbage", "html", "slow-parse", "reset",
    )  # fmt: skip

    def __init__(self) -> None:
        self.bomb = _bomb()
        self.slow = _rss(
            f"<item><title>a</title><guid>urn:slow:a</guid><author>{'a' * 50_000}</author></item>"
        )
        self.hits = 0
        self.served: dict[str, int] = {}
        self.turns: dict[int, int] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/h/{n}", self.serve)
        return app

    async def serve(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        index = int(request.match_info["n"])
        turn = self.turns[index] = self.turns.get(index, -1) + 1
        kind = self.KINDS[(index * 5 + turn) % len(self.KINDS)]
        self.served[kind] = self.served.get(kind, 0) + 1
        if kind == "bomb":
            return await self._stream(request, self.bomb, {"Content-Encoding": "gzip"})
        if kind == "endless":
            return await self._endless(request)
        if kind == "silent":
            await asyncio.sleep(3600)
        if kind == "trickle":
            response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
            await response.prepare(request)
            with contextlib.suppress(ConnectionError):
                for byte in _rss("<item><title>t</title></item>"):
                    await response.write(bytes([byte]))
                    await asyncio.sleep(1)
            return response
        if kind in ("500", "503", "410"):
            return web.Response(status=int(kind), headers={"Retry-After": "120"})
        if kind == "429":
            return web.Response(status=429, headers={"Retry-After": "300"})
        if kind == "loop":
            raise web.HTTPFound(str(request.url))
        if kind == "garbage":
            return web.Response(body=os.urandom(4096), content_type="application/rss+xml")
        if kind == "html":
            return web.Response(
                text="<html><body>not a feed</body></html>", content_type="text/html"
            )
        if kind == "slow-parse":
            return web.Response(body=self.slow, content_type="application/rss+xml")
        if kind == "reset":
            transport = request.transport
            if transport is not None:
                transport.abort()
            return web.Response(status=500)
        return web.Response(status=404)

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        await response.prepare(request)
        chunk = b"<item><title>more</title></item>" * 2048
        with contextlib.suppress(ConnectionError):
            await response.write(b"<rss><channel>")
            for _ in range((2 << 30) // len(chunk)):  # stops by itself after 2 GiB
                await response.write(chunk)
        return response

    async def _stream(
        self, request: web.Request, body: bytes, headers: dict[str, str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml", **headers})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for start in range(0, len(body), 65536):
                await response.write(body[start : start + 65536])
        return response


# -- measuring -----------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append(int(entry.name))
    return found


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(_children(current))
    return out


def _rss_kib(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _fds(pid: int) -> int:
    try:
        return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@dataclass(frozen=True)
class Sample:
    elapsed: float
    rss_mb: float
    workers_rss_mb: float
    fds: int
    db_mb: float
    wal_mb: float
    jobs: int
    posts: int


def sample(pid: int, database: Path, started: float) -> Sample:
    tree = _tree(pid)
    jobs = posts = -1
    uri = f"file:{database}?mode=ro"
    with (
        contextlib.suppress(sqlite3.Error),
        contextlib.closing(sqlite3.connect(uri, uri=True)) as db,
    ):
        db.execute("PRAGMA busy_timeout = 2000")
        jobs = int(db.execute("SELECT count(*) FROM fetch_job").fetchone()[0])
        posts = int(db.execute("SELECT count(*) FROM posts").fetchone()[0])
    return Sample(
        elapsed=time.monotonic() - started,
        rss_mb=_rss_kib(pid) / 1024,
        workers_rss_mb=sum(_rss_kib(p) for p in tree[1:]) / 1024,
        fds=_fds(pid),
        db_mb=_size(database) / 2**20,
        wal_mb=_size(database.with_name(database.name + "-wal")) / 2**20,
        jobs=jobs,
        posts=posts,
    )


HEADER = (
    f"{'t (s)':>7} {'RSS MB':>7} {'workers':>8} {'fds':>5} {'db MB':>7} {'wal MB':>7} "
    f"{'jobs':>7} {'posts':>8}"
)


def line(s: Sample) -> str:
    return (
        f"{s.elapsed:7.0f} {s.rss_mb:7.1f} {s.workers_rss_mb:8.1f} {s.fds:5d} "
        f"{s.db_mb:7.2f} {s.wal_mb:7.2f} {s.jobs:7d} {s.posts:8d}"
    )


def drift(samples: list[Sample], name: str) -> str:
    """Median over the last third minus median over the first third (after warm-up)."""
    values = [getattr(s, name) for s in samples]
    third = max(1, len(values) // 3)
    first, last = statistics.median(values[:third]), statistics.median(values[-third:])
    return f"{name}: first third {first:.1f}, last third {last:.1f}, max {max(values):.1f}"


def outcomes(database: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT coalesce(error_code, status), count(*) FROM fetch_job "
            "GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
    return {str(key): int(count) for key, count in rows}


# -- the run -------------------------------------------------------------------------------


def write_config(workdir: Path, urls: list[str]) -> tuple[Path, Path]:
    """config.toml for the soak (every feed due every minute); its path and the database's."""
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / "rssd.sqlite3"
    config = workdir / "config.toml"
    lines = [
        f'database = "{database}"',
        "interval_minutes = 1",
        # Every minute, whatever the posting rate, and no gap between requests to one host
        # (the farm serves hundreds of feeds per address).
        "min_interval_minutes = 1",
        "max_interval_minutes = 1",
        "host_min_gap_seconds = 0",
        "timeout_seconds = 5",
        "parse_timeout_seconds = 5",
        "keep_fetch_jobs_days = 1",
        "shutdown_grace_seconds = 5",
    ]
    lines += [f'\n[[feeds]]\nurl = "{url}"' for url in urls]
    config.write_text("\n".join(lines) + "\n")
    return config, database


async def soak(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="rssd-soak-"))
    settings = farm.FarmSettings(feeds=args.feeds, items=args.items, hosts=args.hosts, gzip=True)
    the_farm = farm.Farm(settings)
    runner = web.AppRunner(the_farm.app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    port = next(addr[1] for addr in runner.addresses if isinstance(addr, tuple))
    for host in range(2, settings.hosts + 1):
        await web.TCPSite(runner, f"127.0.0.{host}", port, backlog=1024).start()
    hostile = Hostile()
    hostile_runner = web.AppRunner(hostile.app(), access_log=None, handle_signals=False)
    await hostile_runner.setup()
    await web.TCPSite(hostile_runner, "127.0.0.1", 0).start()
    hostile_port = next(a[1] for a in hostile_runner.addresses if isinstance(a, tuple))

    count = max(1, round(args.feeds * args.hostile))
    urls = [farm.feed_url(i, settings.hosts, port) for i in range(args.feeds - count)]
    urls += [f"http://127.0.0.1:{hostile_port}/h/{i}" for i in range(count)]
    config, database = write_config(workdir, urls)
    log = open(workdir / "rssd.log", "wb")  # noqa: ASYNC230, PTH123, SIM115 (closed below)
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rssd", "run", "-c", str(config),
        cwd=ROOT, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    print(
        f"soak: {args.minutes:g} min, {args.feeds} feeds ({count} hostile, each going round "
        f"{len(Hostile.KINDS)} behaviours), farm on 127.0.0.1-{settings.hosts}:{port}, "
        f"rssd pid {proc.pid}, workdir {workdir}",
        flush=True,
    )
    print(HEADER, flush=True)
    started = time.monotonic()
    samples: list[Sample] = []
    next_epoch = started + 60
    deadline = started + args.minutes * 60
    try:
        while time.monotonic() < deadline and proc.returncode is None:
            await asyncio.sleep(args.sample)
            if time.monotonic() >= next_epoch:
                the_farm.advance(0.1)
                next_epoch += 60
            samples.append(await asyncio.to_thread(sample, proc.pid, database, started))
            print(line(samples[-1]), flush=True)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            code = await proc.wait()
        log.close()
        await runner.cleanup()
        await hostile_runner.cleanup()
    print(f"\nrssd exited {code} after SIGTERM")
    if samples:
        for name in ("rss_mb", "workers_rss_mb", "fds", "db_mb", "wal_mb"):
            print("  " + drift(samples, name))
    print(f"  fetch outcomes: {json.dumps(outcomes(database))}")
    print(f"  farm requests: {the_farm.stats}")
    print(f"  hostile requests: {hostile.hits} {json.dumps(hostile.served)}")
    return 0 if code == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--feeds", type=int, default=500)
    parser.add_argument("--items", type=int, default=20, help="posts per farm feed")
    parser.add_argument("--hosts", type=int, default=20, help="loopback addresses for the farm")
    parser.add_argument("--hostile", type=float, default=0.01, help="fraction of hostile feeds")
    parser.add_argument("--sample", type=float, default=10, help="seconds between samples")
    parser.add_argument("--workdir", help="where the database, config and log go")
    return asyncio.run(soak(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
