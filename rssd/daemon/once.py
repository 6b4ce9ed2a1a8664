"""``rssd run --once``: every enabled source fetched once, concurrently, then exit."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from msgspec import Struct, field
from msgspec.structs import replace

from rssd import metrics
from rssd.daemon.delivery import DeliveryLoop, DeliveryStats
from rssd.daemon.digests import close_digests
from rssd.daemon.lag import LagProbe
from rssd.daemon.loop import loop_name
from rssd.daemon.pipeline import JobReport, Pipeline
from rssd.daemon.startup import daemon_session
from rssd.fetch.fetcher import Fetcher
from rssd.logs import get_logger
from rssd.models.config import Config
from rssd.models.dto import ErrorCode, FetchJobStatus, Source
from rssd.repo.db import Database
from rssd.repo.posts import PostRepo
from rssd.repo.sources import SourceRepo
from rssd.webhooks.sender import Sender

log = get_logger("rssd.daemon")


class RunSummary(Struct, frozen=True):
    sources: int
    completed: int
    failed: int
    skipped: int
    posts_new: int
    posts_updated: int
    elapsed_ms: int
    errors: dict[str, int] = field(default_factory=dict)
    #: The signal that cut the run short, if one did (its fetches are ``interrupted``).
    interrupted_by: signal.Signals | None = None

    @classmethod
    def of(
        cls, reports: list[JobReport], elapsed_ms: int, interrupted_by: signal.Signals | None
    ) -> RunSummary:
        errors = Counter(r.error_code.value for r in reports if r.error_code is not None)
        return cls(
            sources=len(reports),
            completed=sum(r.status is FetchJobStatus.COMPLETED for r in reports),
            failed=sum(r.status is FetchJobStatus.FAILED for r in reports),
            skipped=sum(r.skipped for r in reports),
            posts_new=sum(r.posts_new for r in reports),
            posts_updated=sum(r.posts_updated for r in reports),
            elapsed_ms=elapsed_ms,
            errors=dict(errors),
            interrupted_by=interrupted_by,
        )


async def run_once(
    config: Config, path: Path | None = None, mtime: str | None = None
) -> RunSummary:
    """Sync sources from config (read from ``path``, which had ``mtime`` before it was
    read: recorded, so that the next run starts without checking an unchanged file
    again), fetch each enabled one once, log ``run.summary``."""
    started = time.monotonic()
    if config.metrics_file is not None:
        metrics.enable()  # else nothing reads them: not even prometheus_client's import
    lag = LagProbe()
    stopped: list[signal.Signals] = []
    delivered = DeliveryStats()
    async with daemon_session(config, path, mtime=mtime) as db:
        sources = await SourceRepo(db).list(enabled_only=True)
        async with Fetcher(config) as fetcher:
            pipeline = Pipeline(db, fetcher)
            await pipeline.preload()
            lag.start()
            # A fixed set of workers, as the service's launch limit: thousands of feeds
            # are not thousands of tasks and QUEUED jobs at once (that showed as loop lag
            # and memory held for every waiting coroutine; bench/README.md).
            pending = deque(sources)
            done: dict[int, JobReport] = {}
            running: dict[int, Source] = {}

            async def worker() -> None:
                while pending:
                    source = pending.popleft()
                    running[source.id] = source
                    # Pipeline.run records every failure itself; a cancelled one records
                    # ``interrupted`` before it ends.
                    # Kept for the summary only, so without the FetchResult (its meta and
                    # headers), which most of a report's memory is.
                    done[source.id] = replace(await pipeline.run(source), result=None)
                    del running[source.id]

            workers = [
                asyncio.create_task(worker())
                for _ in range(min(len(sources), 2 * config.max_concurrency))
            ]
            with _cancel_on_signals(workers, stopped):
                await asyncio.gather(*workers, return_exceptions=True)
            await pipeline.settle()  # a claim made as its worker was cancelled: recorded
            if not stopped:
                delivered = await _deliver_once(db, config, stopped)
            await lag.stop()
        if config.metrics_file is not None:  # the gauges are read from the file only
            metrics.DATABASE_BYTES.set(await db.size_bytes())
            metrics.POSTS_STORED.set(await PostRepo(db).count())
    interrupted = [
        JobReport(s.id, s.url, None, FetchJobStatus.FAILED, ErrorCode.INTERRUPTED, "cancelled")
        for s in running.values()
    ]
    reports = [*done.values(), *interrupted]
    elapsed_ms = int((time.monotonic() - started) * 1000)
    summary = RunSummary.of(reports, elapsed_ms, stopped[0] if stopped else None)
    log.info(
        "run.summary",
        sources=summary.sources,
        completed=summary.completed,
        failed=summary.failed,
        skipped=summary.skipped,
        posts_new=summary.posts_new,
        posts_updated=summary.posts_updated,
        deliveries_sent=delivered.sent,
        deliveries_failed=delivered.failed,
        deliveries_dead=delivered.dead,
        elapsed_ms=summary.elapsed_ms,
        errors=summary.errors,
        loop_lag_max_ms=lag.take_max(),
        loop=loop_name(),
        interrupted_by=summary.interrupted_by.name if summary.interrupted_by else None,
    )
    if config.metrics_file is not None:
        try:
            metrics.write(config.metrics_file)
        except OSError as exc:
            log.warning(
                "metrics.write_failed", path=str(config.metrics_file), error_message=str(exc)
            )
    return summary


async def _deliver_once(
    db: Database, config: Config, stopped: list[signal.Signals]
) -> DeliveryStats:
    """One delivery pass over the messages due (this run's and older ones); what is still
    pending afterwards (a retry scheduled later) waits for the next run."""
    await close_digests(db)
    async with Sender(config.webhooks, config.user_agent) as sender:
        loop = DeliveryLoop(db, config, sender)
        task = asyncio.create_task(loop.run_once(), name="delivery")
        with _cancel_on_signals([task], stopped):
            await asyncio.gather(task, return_exceptions=True)
    return loop.stats


@contextmanager
def _cancel_on_signals(
    tasks: list[asyncio.Task[None]], stopped: list[signal.Signals]
) -> Iterator[None]:
    """SIGTERM/SIGINT cancel the run's fetches (recorded ``interrupted``) instead of
    killing the process with jobs left ONGOING."""
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        log.warning("run.interrupted", signal=sig.name)
        stopped.append(sig)
        for task in tasks:
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
