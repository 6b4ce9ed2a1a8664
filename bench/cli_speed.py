"""How fast the operator commands answer: start-up, and queries on a big database.

    .venv/bin/python bench/cli_speed.py [--feeds 10000] [--posts 500000] [--runs 5]

Builds two databases in a temporary folder through rssd's own schema (``open_database``),
filled with plain ``sqlite3`` bulk inserts (building them through fetches would take an
hour): a small one (1,000 feeds, 20 posts each) and a big one (``--feeds`` feeds,
``--posts`` posts, three fetch jobs per feed: an old success, a failure, a success). Then it
runs each command as an operator's shell does (``python -m rssd ...``, a new process each
time) ``--runs`` times and prints the median and the fastest wall time, beside a bare
``python -c pass``. The configs name the database only, except two that also list the
1,000 feeds of the small database, as a real config.toml would; one of them is recorded as
synced, as a running daemon records its config (``status`` then needs no validation).
Timings live here, never in the tests (tests/test_query_plans.py checks that the queries
use their indexes instead).

rssd's modules are byte-compiled first, as pip does when it installs rssd: run from a
checkout with ``PYTHONDONTWRITEBYTECODE`` set, every start would otherwise compile the ~35
modules a command imports again (~20 ms), which no installed rssd does.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import rssd
from rssd.daemon.startup import file_mtime
from rssd.models.config import load_config
from rssd.repo.config_sync import sync_config
from rssd.repo.open import open_database

EPOCH = datetime(2026, 11, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def build(database: Path, feeds: int, posts: int, seed: int = 1) -> None:
    """The schema from rssd itself, then rows in bulk (one transaction per table)."""

    async def create() -> None:
        await (await open_database(database)).close()

    asyncio.run(create())
    rng = random.Random(seed)
    now = iso(EPOCH)
    with sqlite3.connect(database) as conn:
        conn.executemany(
            "INSERT INTO content_sources (id, url, name, interval_minutes, timeout_seconds, "
            "enabled, created_at, updated_at) VALUES (?, ?, ?, 60, 30.0, 1, ?, ?)",
            (
                (i, f"http://feeds.example/{i}", f"Feed number {i}", now, now)
                for i in range(1, feeds + 1)
            ),
        )
        jobs = []
        for source in range(1, feeds + 1):
            base = EPOCH + timedelta(minutes=source % 600)
            for step, (status, code) in enumerate(
                (("COMPLETED", None), ("FAILED", "timeout"), ("COMPLETED", None))
            ):
                at = iso(base + timedelta(hours=step))
                jobs.append((source, status, at, at, at, code, 200 if code is None else None))
        conn.executemany(
            "INSERT INTO fetch_job (content_source_id, status, queued_at, started_at, ended_at, "
            "error_code, http_status) VALUES (?, ?, ?, ?, ?, ?, ?)",
            jobs,
        )

        def post_rows() -> object:
            for n in range(posts):
                source = n % feeds + 1
                published = EPOCH - timedelta(minutes=rng.randrange(0, 60 * 24 * 365))
                stored = EPOCH - timedelta(minutes=(posts - n) // 10)
                yield (
                    source,
                    f"guid-{n}",
                    f"Post {n} of feed {source}",
                    f"http://feeds.example/{source}/posts/{n}",
                    "A summary of a few words, as feeds give them. " * 4,
                    None if n % 10 == 0 else iso(published),
                    iso(stored),
                    f"h{n}",
                )

        conn.executemany(
            "INSERT INTO posts (content_source_id, external_id, title, url, summary, "
            "published_at, created_at, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            post_rows(),  # type: ignore[arg-type]
        )
    with closing(sqlite3.connect(database)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def write_config(folder: Path, database: Path, feeds: int = 0) -> Path:
    """A config naming the database; with ``feeds``, listing the database's first feeds
    too, as a real config.toml does (validating them is part of the command's time)."""
    config = folder / f"{database.stem}{'-feeds' if feeds else ''}.toml"
    tables = "".join(
        f'[[feeds]]\nurl = "http://feeds.example/{i}"\nname = "Feed number {i}"\n'
        for i in range(1, feeds + 1)
    )
    config.write_text(f'database = "{database}"\n{tables}')
    return config


def sync_as_daemon(config: Path) -> None:
    """Record ``config`` as synced, as a daemon does when it loads it (config_sync: its
    hash and its file's mtime). ``status`` beside a running daemon meets exactly this."""

    async def sync() -> None:
        loaded = load_config(config)
        db = await open_database(loaded.database)
        try:
            await sync_config(
                db, loaded, file_mtime=file_mtime(config), daemon_id=None, guard=False
            )
        finally:
            await db.close()

    asyncio.run(sync())


def timed(argv: list[str], runs: int) -> tuple[float, float, float]:
    """Median and fastest wall time of ``argv`` as a new process, and its median CPU time
    (user + system, from the children's rusage), in seconds. CPU time says more than wall
    time on a machine whose other work competes for the cores."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), min(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    python = sys.executable
    compileall.compile_dir(Path(rssd.__file__).parent, quiet=1)
    cmd = [python, "-m", "rssd"]
    with tempfile.TemporaryDirectory(prefix="rssd-cli-bench-") as temp:
        folder = Path(temp)
        small, big = folder / "small.sqlite3", folder / "big.sqlite3"
        started = time.perf_counter()
        build(small, 1000, 20_000)
        build(big, args.feeds, args.posts)
        print(f"built both databases in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        synced = write_config(folder, small, feeds=1000).rename(folder / "synced.toml")
        sync_as_daemon(synced)
        time.sleep(0.01)  # the other configs are other files: not the synced file's mtime
        small_config, big_config = write_config(folder, small), write_config(folder, big)
        listed = write_config(folder, small, feeds=1000)
        some = str(args.feeds // 2)
        cases = [
            ("python -c pass", [python, "-c", "pass"]),
            ("rssd --version", [*cmd, "--version"]),
            ("status (1,000 feeds)", [*cmd, "status", "-c", str(small_config)]),
            ("status (1,000 feeds, listed in the config)", [*cmd, "status", "-c", str(listed)]),
            (
                "status (1,000 feeds, the config a daemon synced)",
                [*cmd, "status", "-c", str(synced)],
            ),
            ("posts (1,000 feeds)", [*cmd, "posts", "-c", str(small_config)]),
            (f"status ({args.feeds:,} feeds)", [*cmd, "status", "-c", str(big_config)]),
            ("posts --limit 20", [*cmd, "posts", "--limit", "20", "-c", str(big_config)]),
            (
                "posts --limit 20 --source ID",
                [*cmd, "posts", "--limit", "20", "--source", some, "-c", str(big_config)],
            ),
            (
                'posts --limit 20 --source "NAME"',
                [
                    *cmd,
                    "posts",
                    "--limit",
                    "20",
                    "--source",
                    f"Feed number {some}",
                    "-c",
                    str(big_config),
                ],
            ),
            (
                "posts --limit 20 --since 2026-10-25",
                [*cmd, "posts", "--limit", "20", "--since", "2026-10-25", "-c", str(big_config)],
            ),
            (
                "posts --limit 20 --stored-since 2026-10-31T23:00",
                [
                    *cmd,
                    "posts",
                    "--limit",
                    "20",
                    "--stored-since",
                    "2026-10-31T23:00",
                    "-c",
                    str(big_config),
                ],
            ),
        ]
        print(f"load average before: {os.getloadavg()[0]:.1f}", file=sys.stderr)
        print(
            f"| command ({args.runs} runs each) | wall median s | wall fastest s | CPU median s |"
        )
        print("|---|---|---|---|")
        for label, argv in cases:
            median, fastest, cpu = timed(argv, args.runs)
            print(f"| `{label}` | {median:.3f} | {fastest:.3f} | {cpu:.3f} |")
        print(f"load average after: {os.getloadavg()[0]:.1f}", file=sys.stderr)


if __name__ == "__main__":
    main()
