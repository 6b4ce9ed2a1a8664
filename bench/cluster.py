"""Several rssd daemons on one PostgreSQL database: feed checks per second, CPU per check,
the claim layer's capacity, claim latency.

    .venv/bin/python bench/cluster.py --feeds 1000 --daemons 1,3 --claimers 1,2,4,8
    .venv/bin/python bench/cluster.py --json ...   # one JSON object per line

**Capacity** (``--claimers``): K claimers (one database connection set each, as K daemons)
drain ``--claim-jobs`` due jobs with no HTTP at all: claim a batch of up to 50, complete
every claimed job at once (a 304 each, the next job queued a day ahead, as a daemon does),
again. Claim + complete cycles per second is what one PostgreSQL sustains before the
database itself is the limit. **CPU per check** (``--daemons``): N ``rssd run`` processes
started idle on the farm's feeds, then every job made due at once (a NOTIFY wakes them);
each daemon process's own CPU (parse workers excluded) from then until the last check,
per check.

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
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
from run import FarmProcess, compile_rssd
from yarl import URL

from rssd.clock import now_iso, parse_iso, to_iso, utcnow
from rssd.models.config import config_of
from rssd.models.dto import FetchMeta
from rssd.repo.claims import ClaimRepo
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from rssd.repo.transitions import NextJob

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


async def prepare(url: str, feeds: list[str], *, due_now: bool = True) -> None:
    """Sources synced, each with a job due now (the daemons find all the work waiting) or,
    ``due_now`` False, a day ahead (the daemons start idle)."""
    db = await open_database(url)
    try:
        config = config_of({"database": url, "feeds": [{"url": u} for u in feeds]})
        await SourceRepo(db).sync(config)
        due = now_iso() if due_now else to_iso(utcnow() + timedelta(days=1))
        sources = await SourceRepo(db).list()
        claims = ClaimRepo(db, "bench")
        await claims.queue_missing({s.id: due for s in sources})
        await claims.refresh_statistics()  # as rssd/daemon/reconcile.py does after a bulk queue
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


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (its threads, not its children) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _sql(url: str, statement: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(statement)
        return list(await cursor.fetchall()) if cursor.description else []


async def _until_started(url: str, daemons: int) -> None:
    """Wait for every daemon's first heartbeat row (written once it is ready to claim)."""
    started = 0
    while started < daemons:
        await asyncio.sleep(0.2)
        (row,) = await _sql(url, "SELECT count(*) FROM daemons")
        started = int(str(row[0]))


async def daemon_run(
    farm: FarmProcess, feeds: int, daemons: int, concurrency: int
) -> dict[str, float | int]:
    """``daemons`` rssd processes, idle first, then every job due at once: checks/s and
    each process's own CPU per check over the whole run (start-up excluded)."""
    urls = farm.urls(feeds)
    farm.call("/_reset")
    async with fresh_database(ADMIN) as url:
        await prepare(url, urls, due_now=False)
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
                await _until_started(url, daemons)
                await asyncio.sleep(2.0)  # past start-up: reconcile, preload, the pools
                before = sum(process_cpu_seconds(proc.pid) for proc in procs)
                # Every job due now; the status in the SET list fires the NOTIFY trigger.
                await _sql(
                    url,
                    "UPDATE fetch_job SET status = 'QUEUED', not_before = now() "
                    "WHERE status = 'QUEUED'",
                )
                while True:
                    done, first, last = await finished(url)
                    if done >= feeds:
                        break
                    await asyncio.sleep(0.5)
                cpu = sum(process_cpu_seconds(proc.pid) for proc in procs) - before
            finally:
                for proc in procs:
                    proc.send_signal(signal.SIGTERM)
                for proc in procs:
                    await proc.wait()
    assert first is not None and last is not None
    elapsed = (parse_iso(str(last)) - parse_iso(str(first))).total_seconds()
    return {
        "daemons": daemons,
        "checks": feeds,
        "checks_per_second": round(feeds / elapsed, 1),
        "main_cpu_ms_per_check": round(cpu * 1000 / feeds, 3),
    }


async def claim_capacity(url: str, claimers: int, jobs: int, batch: int = 50) -> float:
    """Claim + complete cycles per second of ``claimers`` claimer processes (each as one
    daemon: its own process and connections) draining ``jobs`` due jobs together."""
    feeds = [f"http://h{i % 500}.example/feed{i}" for i in range(jobs)]
    db = await open_database(url)
    try:
        config = config_of({"database": url, "feeds": [{"url": u} for u in feeds]})
        await SourceRepo(db).sync(config)
        now = now_iso()
        claims = ClaimRepo(db, "bench")
        await claims.queue_missing({s.id: now for s in await SourceRepo(db).list()})
        await claims.refresh_statistics()  # as rssd/daemon/reconcile.py does after a bulk queue
    finally:
        await db.close()
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--claimer-worker", url, str(n), str(batch),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        for n in range(claimers)
    ]  # fmt: skip
    for proc in procs:  # each connected and ready
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
    done = 0
    for proc in procs:
        assert proc.stdout is not None
        done += int((await proc.stdout.readline()).strip() or 0)
        await proc.wait()
    elapsed = time.perf_counter() - started
    if done != jobs:
        raise RuntimeError(f"the claimers completed {done} jobs of {jobs}")
    return jobs / elapsed


async def claimer_worker(url: str, n: int, batch: int) -> None:
    """One claimer process: claim up to ``batch`` due jobs, complete all of them at once
    (a 304 each, the next job a day ahead, as a daemon does), until none is due."""
    db = await open_database(url)
    claims, repo = ClaimRepo(db, f"c{n}"), FetchJobRepo(db)
    later = to_iso(utcnow() + timedelta(days=1))
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    done = 0
    try:
        while claimed := await claims.claim_due(batch, 10):
            await asyncio.gather(
                *(
                    repo.mark_completed(
                        claim.job.id, FetchMeta(http_status=304), next_job=NextJob(later)
                    )
                    for claim in claimed
                )
            )
            done += len(claimed)
    finally:
        await db.close()
    print(done, flush=True)


async def claim_latency(target: Path | str, claimers: int, jobs: int) -> list[float]:
    """Milliseconds per claim_due(10) with ``claimers`` claimers draining ``jobs`` jobs."""
    db = await open_database(target)
    feeds = [f"http://h{i % 50}.example/feed{i}" for i in range(jobs)]
    try:
        config = config_of({"database": str(target), "feeds": [{"url": u} for u in feeds]})
        await SourceRepo(db).sync(config)
        now = now_iso()
        claims = ClaimRepo(db, "bench")
        await claims.queue_missing({s.id: now for s in await SourceRepo(db).list()})
        await claims.refresh_statistics()
    finally:
        await db.close()
    latencies: list[float] = []

    async def claimer(n: int) -> None:
        own = await open_database(target)
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


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def emit(args: argparse.Namespace, record: Mapping[str, object], text: str) -> None:
    print(json.dumps(record) if args.json else text, flush=True)


async def amain(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.daemons.split(",") if n]
    machine = {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }
    emit(
        args,
        {"machine": machine},
        f"machine: {machine['cpu_model']}, {machine['cores']} cores, load {machine['load_avg']}",
    )
    for n in [int(n) for n in args.claimers.split(",") if n]:
        async with fresh_database(ADMIN) as url:
            rate = await claim_capacity(url, n, args.claim_jobs)
        emit(
            args,
            {"claimers": n, "jobs": args.claim_jobs, "cycles_per_second": round(rate, 1)},
            f"claim + complete, {n} claimer(s), no HTTP, PostgreSQL: {rate:8.1f} cycles/s "
            f"({rate * 3600 / 1e6:.1f} million checks an hour)",
        )
    if counts:
        farm = FarmProcess(
            args.feeds, args.items, args.hosts, gzip=False, latency=(args.latency_ms, 1.0, 1)
        )
        try:
            if not args.json:
                print(
                    f"feeds={args.feeds} items={args.items} hosts={args.hosts} (every feed parsed)"
                )
            for n in counts:
                record = await daemon_run(farm, args.feeds, n, args.concurrency)
                emit(
                    args,
                    record,
                    f"{n} daemon(s) on PostgreSQL: {record['checks_per_second']:7.1f} checks/s, "
                    f"main CPU {record['main_cpu_ms_per_check']:.2f} ms per check",
                )
        finally:
            farm.stop()
    if not args.latency_report:
        return
    for n in counts:
        async with fresh_database(ADMIN) as url:
            ms = await claim_latency(url, n, args.claim_jobs)
        print(
            f"claim_due(10), {n} claimer(s), PostgreSQL: p50 {percentile(ms, 50):.1f} ms, "
            f"p99 {percentile(ms, 99):.1f} ms ({len(ms)} claims)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        ms = await claim_latency(Path(tmp) / "bench.sqlite3", 1, args.claim_jobs)
    # (claim latency is printed as text only)
    print(
        f"claim_due(10), 1 claimer, SQLite: p50 {percentile(ms, 50):.1f} ms, "
        f"p99 {percentile(ms, 99):.1f} ms ({len(ms)} claims)"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--claimer-worker"]:  # one process of claim_capacity
        url, n, batch = argv[1], int(argv[2]), int(argv[3])
        asyncio.run(claimer_worker(url, n, batch))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--items", type=int, default=10, help="posts per feed")
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--daemons", default="1,3", help="daemon counts to measure ('' none)")
    parser.add_argument(
        "--claimers", default="1,2,4,8", help="claimer counts for the capacity ('' none)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--latency-report", action="store_true", help="also claim_due's p50/p99 latency"
    )
    parser.add_argument("--concurrency", type=int, default=20, help="max_concurrency each")
    parser.add_argument("--claim-jobs", type=int, default=2000, help="jobs the claimers drain")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="the farm's median response delay"
    )
    args = parser.parse_args(argv)
    compile_rssd()  # its daemons and claimers start from the same bytecode as run.py's
    asyncio.run(amain(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
