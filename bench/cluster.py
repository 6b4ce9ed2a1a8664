"""Several rssd daemons on one PostgreSQL database: feed checks per second, claim latency.

    .venv/bin/python bench/cluster.py --feeds 1000 --daemons 1,2,3

For each daemon count: a fresh PostgreSQL database, every feed of the farm (bench/farm.py)
synced and due at once, N ``rssd run`` processes started; checks per second = feeds / the
time from the first job's start to the last one's end (read from fetch_job, so start-up is
not counted). Then the claim latency: K claimers (one pool each, as K daemons) take batches
of 10 due jobs and complete them at once, on PostgreSQL and, for K = 1, on SQLite; p50/p99
of ``ClaimRepo.claim_due``. ``--pg`` (or RSSD_TEST_PG) names the server: an admin URL that
may create and drop databases. Timings live here, never in the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
from run import FarmProcess
from yarl import URL

from rssd.clock import now_iso, parse_iso
from rssd.models.config import Config
from rssd.models.dto import FetchMeta
from rssd.repo.claims import ClaimRepo
from rssd.repo.db import Database
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.sources import SourceRepo

ADMIN = os.environ.get("RSSD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@asynccontextmanager
async def fresh_database(admin: str) -> AsyncIterator[str]:
    name = f"rssd_bench_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield str(URL(admin).with_path(f"/{name}"))
        finally:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def config_text(url: str, feeds: list[str], concurrency: int) -> str:
    lines = [
        f'database = "{url}"',
        f"max_concurrency = {concurrency}",
        "interval_minutes = 1440",
        "host_min_gap_seconds = 0",  # dozens of feeds per farm address
        'log_level = "warning"',
    ]
    for feed in feeds:
        lines += ["[[feeds]]", f'url = "{feed}"']
    return "\n".join(lines) + "\n"


async def prepare(url: str, feeds: list[str]) -> None:
    """Sources synced, each with a job due now: the daemons find all the work waiting."""
    db = await Database.open(url)
    try:
        config = Config.model_validate({"database": url, "feeds": [{"url": u} for u in feeds]})
        await SourceRepo(db).sync(config)
        now = now_iso()
        sources = await SourceRepo(db).list()
        await ClaimRepo(db, "bench").queue_missing({s.id: now for s in sources})
    finally:
        await db.close()


async def finished(url: str) -> tuple[int, str | None, str | None]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*), min(started_at), max(ended_at) FROM fetch_job "
            "WHERE status IN ('COMPLETED', 'FAILED')"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), row[1], row[2]


async def checks_per_second(farm: FarmProcess, feeds: int, daemons: int, concurrency: int) -> float:
    urls = farm.urls(feeds)
    farm.call("/_reset")
    async with fresh_database(ADMIN) as url:
        await prepare(url, urls)
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "config.toml"
            config.write_text(config_text(url, urls, concurrency))
            procs = [
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "rssd", "run", "-c", str(config),
                    cwd=tmp,
                    stdout=subprocess.DEVNULL,
                    start_new_session=True,
                )
                for _ in range(daemons)
            ]  # fmt: skip
            try:
                while True:
                    done, first, last = await finished(url)
                    if done >= feeds:
                        break
                    await asyncio.sleep(0.5)
            finally:
                for proc in procs:
                    proc.send_signal(signal.SIGTERM)
                for proc in procs:
                    await proc.wait()
    assert first is not None and last is not None
    elapsed = (parse_iso(str(last)) - parse_iso(str(first))).total_seconds()
    return feeds / elapsed


async def claim_latency(target: Path | str, claimers: int, jobs: int) -> list[float]:
    """Milliseconds per claim_due(10) with ``claimers`` claimers draining ``jobs`` jobs."""
    db = await Database.open(target)
    feeds = [f"http://h{i % 50}.example/feed{i}" for i in range(jobs)]
    try:
        config = Config.model_validate(
            {"database": str(target), "feeds": [{"url": u} for u in feeds]}
        )
        await SourceRepo(db).sync(config)
        now = now_iso()
        await ClaimRepo(db, "bench").queue_missing({s.id: now for s in await SourceRepo(db).list()})
    finally:
        await db.close()
    latencies: list[float] = []

    async def claimer(n: int) -> None:
        own = await Database.open(target)
        claims, repo = ClaimRepo(own, f"c{n}"), FetchJobRepo(own)
        try:
            while True:
                started = time.perf_counter()
                batch = await claims.claim_due(10, 2)
                latencies.append((time.perf_counter() - started) * 1000)
                if not batch:
                    return
                for claim in batch:
                    await repo.mark_completed(claim.job.id, FetchMeta(http_status=304))
        finally:
            await own.close()

    await asyncio.gather(*(claimer(n) for n in range(claimers)))
    return latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def amain(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.daemons.split(",")]
    farm = FarmProcess(
        args.feeds, args.items, args.hosts, gzip=False, latency=(args.latency_ms, 1.0, 1)
    )
    try:
        print(f"feeds={args.feeds} items={args.items} hosts={args.hosts} (cold: every feed parsed)")
        for n in counts:
            rate = await checks_per_second(farm, args.feeds, n, args.concurrency)
            print(f"{n} daemon(s) on PostgreSQL: {rate:7.1f} feed checks/s")
    finally:
        farm.stop()
    for n in counts:
        async with fresh_database(ADMIN) as url:
            ms = await claim_latency(url, n, args.claim_jobs)
        print(
            f"claim_due(10), {n} claimer(s), PostgreSQL: p50 {percentile(ms, 50):.1f} ms, "
            f"p99 {percentile(ms, 99):.1f} ms ({len(ms)} claims)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        ms = await claim_latency(Path(tmp) / "bench.sqlite3", 1, args.claim_jobs)
    print(
        f"claim_due(10), 1 claimer, SQLite: p50 {percentile(ms, 50):.1f} ms, "
        f"p99 {percentile(ms, 99):.1f} ms ({len(ms)} claims)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--items", type=int, default=10, help="posts per feed")
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--daemons", default="1,2,3", help="daemon counts to measure")
    parser.add_argument("--concurrency", type=int, default=20, help="max_concurrency each")
    parser.add_argument("--claim-jobs", type=int, default=2000, help="jobs the claimers drain")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="the farm's median response delay"
    )
    asyncio.run(amain(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
