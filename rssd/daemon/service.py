"""``rssd run``: the long-running service.

One asyncio loop owns: a due-queue (heap) of sources; fetch tasks launched from it under
the Fetcher's global and per-host limits; config reload (SIGHUP or an edit of the file);
housekeeping (pruning, a ``stats`` event a minute); the systemd protocol (READY, RELOADING,
STOPPING, WATCHDOG, STATUS); and a graceful stop on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from rssd import metrics
from rssd.clock import to_iso, utcnow
from rssd.daemon import notify
from rssd.daemon.delivery import DeliveryLoop
from rssd.daemon.history import history_of
from rssd.daemon.lag import LagProbe
from rssd.daemon.loop import loop_name
from rssd.daemon.pipeline import JobReport, Pipeline
from rssd.daemon.schedule import Hints, History, Policy, next_due
from rssd.daemon.startup import daemon_session, sync_sources
from rssd.daemon.watcher import FileWatcher
from rssd.fetch.fetcher import Fetcher
from rssd.logs import get_logger, set_level
from rssd.models.config import Config, ConfigError, load_config
from rssd.models.dto import ErrorCode, FetchJobStatus, Source
from rssd.repo.db import Database
from rssd.repo.jobs import FetchJobRepo, latest_jobs
from rssd.repo.outbox import OutboxRepo
from rssd.repo.posts import PostRepo
from rssd.repo.sources import SourceRepo
from rssd.webhooks.sender import Sender

log = get_logger("rssd.daemon")

WATCH_SECONDS = 1.0
#: How often the ``stats`` event is logged and retention applied; the environment
#: variables RSSD_STATS_SECONDS and RSSD_PRUNE_SECONDS override them (for tests and
#: debugging: a test cannot wait a minute for a stats event).
STATS_SECONDS = 60.0
PRUNE_SECONDS = 3600.0
#: A permanent redirect seen this many times in a row makes us fetch the new URL directly.
MOVED_AFTER = 2


def seconds_from_env(name: str, default: float) -> float:
    """A period from the environment (see STATS_SECONDS); unset or unusable: ``default``."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        log.warning("daemon.setting_ignored", variable=name, value=raw, default=default)
        return default
    return value


@dataclass
class Stats:
    """Counters for the minute's ``stats`` event."""

    ok: int = 0
    failed: int = 0
    posts_new: int = 0

    def reset(self) -> None:
        self.ok = self.failed = self.posts_new = 0


@dataclass
class SourceState:
    source: Source
    history: History
    hints: Hints | None = None
    moved_to: str | None = None
    moved_seen: int = 0
    generation: int = 0


@dataclass(order=True)
class _Due:
    due: datetime
    source_id: int = field(compare=False)
    generation: int = field(compare=False)


class Service:
    def __init__(
        self, config_path: Path, config: Config, watcher: FileWatcher | None = None
    ) -> None:
        self.config_path = config_path
        self.config = config
        #: Snapshot of the file taken before it was read, so an edit made while the daemon
        #: starts up is noticed, not lost.
        self.watcher = watcher or FileWatcher(config_path)
        self.states: dict[int, SourceState] = {}
        self.heap: list[_Due] = []
        self.in_flight: dict[int, asyncio.Task[JobReport]] = {}
        self.stats = Stats()
        self.stats_seconds = seconds_from_env("RSSD_STATS_SECONDS", STATS_SECONDS)
        self.prune_seconds = seconds_from_env("RSSD_PRUNE_SECONDS", PRUNE_SECONDS)
        self.lag = LagProbe()
        self.stopping = asyncio.Event()
        self.wake = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.heartbeat = time.monotonic()
        self.random = random.Random()
        #: Sources in the database that are not scheduled (disabled or removed from config).
        self.disabled = 0
        self._db: Database | None = None
        self._fetcher: Fetcher | None = None
        self._pipeline: Pipeline | None = None
        #: The long-lived tasks the watchdog vouches for (the watchdog itself aside).
        self.tasks: dict[str, asyncio.Task[None]] = {}
        #: Watchdog checks made so far, pinged or not: how a test knows one has happened.
        self.watchdog_checks = 0
        self._delivery: DeliveryLoop | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        # Signals first: a SIGHUP during start-up (its default action kills) is a reload
        # handled once the watcher runs; a SIGTERM makes the service stop once it is up.
        self._install_signals()
        try:
            async with daemon_session(self.config) as db:
                self._db = db
                await self._serve(db)
        finally:
            self._remove_signals()

    async def _serve(self, db: Database) -> None:
        await self._load_states()
        async with (
            Fetcher(self.config) as fetcher,
            Sender(self.config.webhooks, self.config.user_agent) as sender,
        ):
            self._fetcher = fetcher
            self._pipeline = Pipeline(db, fetcher)
            self._delivery = DeliveryLoop(db, self.config, sender)
            await self._pipeline.preload()
            self.tasks = {
                name: asyncio.create_task(supervised(name, work), name=name)
                for name, work in (
                    ("scheduler", self._scheduler),
                    ("delivery", self._delivery.run),
                    ("config-watch", self._watch_config),
                    ("housekeeping", self._housekeeping),
                    ("metrics", self._metrics_writer),
                )
            }
            tasks = [*self.tasks.values(), asyncio.create_task(self._watchdog(), name="watchdog")]
            self.lag.start()
            notify.notify(f"READY=1\nSTATUS={self._status_line()}")
            log.info("daemon.ready", sources=len(self.states), pid=os.getpid(), loop=loop_name())
            await self.stopping.wait()
            notify.notify("STOPPING=1")
            log.info("daemon.stopping", in_flight=len(self.in_flight))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.lag.stop()
            await self._drain()
        self._write_metrics_now()
        log.info("daemon.stopped")

    async def _drain(self) -> None:
        """In-flight fetches get the grace period; the rest are cancelled -> interrupted."""
        pending = list(self.in_flight.values())
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=self.config.shutdown_grace_seconds)
        for task in still:
            task.cancel()
        if still:
            log.warning("daemon.cancelled_fetches", count=len(still))
            await asyncio.wait(still)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self.request_reload, "SIGHUP")

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    def stop(self, reason: str = "request") -> None:
        if not self.stopping.is_set():
            log.info("daemon.signal", signal=reason)
        self.stopping.set()
        self.wake.set()

    def request_reload(self, reason: str = "SIGHUP") -> None:
        log.info("config.reload_requested", trigger=reason)
        self.reload_requested.set()

    # -- scheduling ------------------------------------------------------------------------

    async def _load_states(self, only: set[int] | None = None) -> None:
        """(Re)build scheduling state from the database for all or some sources."""
        assert self._db is not None
        every = await SourceRepo(self._db).list()
        sources = {s.id: s for s in every if s.enabled}
        self.disabled = len(every) - len(sources)
        latest = {row.source_id: row for row in await latest_jobs(self._db)}
        for source_id in list(self.states):
            if source_id not in sources:
                del self.states[source_id]  # disabled or removed: unscheduled
        for source_id, source in sources.items():
            if only is not None and source_id not in only and source_id in self.states:
                self.states[source_id].source = source
                continue
            previous = self.states.get(source_id)
            state = SourceState(source, history_of(latest[source_id]))
            if previous is not None:
                state.generation = previous.generation + 1
            self.states[source_id] = state
            self._schedule(state)
        self.wake.set()

    def _policy(self, source: Source) -> Policy:
        return Policy(interval=timedelta(minutes=source.interval_minutes))

    def _schedule(self, state: SourceState) -> None:
        now = utcnow()
        due = next_due(
            state.history, self._policy(state.source), now, self.random.random(), state.hints
        )
        if due is None:
            log.warning(
                "source.gone",
                source_id=state.source.id,
                url=state.source.url,
                detail="410 Gone: not fetched again until its config entry changes",
            )
            return
        heapq.heappush(self.heap, _Due(due, state.source.id, state.generation))
        log.debug(
            "schedule.next",
            source_id=state.source.id,
            due_at=to_iso(due),
            in_seconds=round((due - now).total_seconds(), 1),
            failures=state.history.failures,
            hinted=state.hints is not None,
        )

    def due_now(self) -> int:
        now = utcnow()
        return sum(1 for item in self.heap if item.due <= now and self._current(item))

    def _current(self, item: _Due) -> bool:
        state = self.states.get(item.source_id)
        return state is not None and state.generation == item.generation

    async def _scheduler(self) -> None:
        """Pop due sources and launch their fetches; never more than 2x max_concurrency
        tasks at once, so jobs are not queued far ahead of the slots that will run them."""
        while not self.stopping.is_set():
            self.heartbeat = time.monotonic()
            now = utcnow()
            limit = 2 * self.config.max_concurrency
            while self.heap and self.heap[0].due <= now and len(self.in_flight) < limit:
                item = heapq.heappop(self.heap)
                if self._current(item) and item.source_id not in self.in_flight:
                    self._launch(self.states[item.source_id])
            wait = 1.0
            if self.heap and len(self.in_flight) < limit:
                wait = min(wait, max(0.0, (self.heap[0].due - now).total_seconds()))
            self.wake.clear()
            try:
                async with asyncio.timeout(wait):
                    await self.wake.wait()
            except TimeoutError:
                pass

    def _launch(self, state: SourceState) -> None:
        assert self._pipeline is not None
        source = state.source
        task = asyncio.create_task(
            self._pipeline.run(source, state.moved_to), name=f"fetch-{source.id}"
        )
        self.in_flight[source.id] = task
        log.debug(
            "fetch.launched",
            source_id=source.id,
            url=state.moved_to or source.url,
            in_flight=len(self.in_flight),
        )
        generation = state.generation

        def done(finished: asyncio.Task[JobReport]) -> None:
            self._done(source.id, generation, finished)

        task.add_done_callback(done)

    def _done(self, source_id: int, generation: int, task: asyncio.Task[JobReport]) -> None:
        self.in_flight.pop(source_id, None)
        self.wake.set()
        if self.stopping.is_set():
            return
        state = self.states.get(source_id)
        if task.cancelled():  # not by us (we only cancel when stopping): try again soon
            if state is not None and state.generation == generation:
                state.history = History(ended_at=utcnow(), interrupted=True)
                self._schedule(state)
            return
        if task.exception() is not None:  # Pipeline.run does not raise; if it ever does:
            log.error("fetch.crashed", source_id=source_id, exc_info=task.exception())
            if state is not None and state.generation == generation:
                state.history = History(ended_at=utcnow(), failures=state.history.failures + 1)
                self._schedule(state)
            return
        report = task.result()
        if state is None or state.generation != generation:
            return  # removed or rescheduled by a reload while it ran
        self._record(state, report)
        self._schedule(state)

    def _record(self, state: SourceState, report: JobReport) -> None:
        """Fold a finished attempt into the source's history (no query needed)."""
        now = utcnow()
        if report.status is FetchJobStatus.COMPLETED:
            self.stats.ok += 1
            self.stats.posts_new += report.posts_new
            if report.messages and self._delivery is not None:
                self._delivery.poke()
            state.history = History(ended_at=now)
        elif report.status is FetchJobStatus.FAILED:
            self.stats.failed += 1
            if state.moved_to:  # the new location failed: go back to the configured URL
                state.moved_to, state.moved_seen = None, 0
            interrupted = report.error_code is ErrorCode.INTERRUPTED
            state.history = History(
                ended_at=now,
                failures=state.history.failures + (0 if interrupted else 1),
                interrupted=interrupted,
                gone=report.error_code is ErrorCode.GONE,
            )
        else:  # skipped: another process holds the source's active job; try again later
            state.history = History(ended_at=now, failures=state.history.failures)
        result = report.result
        state.hints = None
        if result is not None:
            state.hints = Hints(
                http_status=result.meta.http_status,
                headers=dict(result.hints),
                ttl_minutes=result.ttl_minutes,
            )
            self._note_redirect(state, result.moved_permanently, result.meta.final_url)

    def _note_redirect(self, state: SourceState, moved: bool, final_url: str | None) -> None:
        if not moved or not final_url or final_url == state.source.url:
            state.moved_seen = 0 if not state.moved_to else state.moved_seen
            return
        state.moved_seen += 1
        if state.moved_seen >= MOVED_AFTER and state.moved_to != final_url:
            state.moved_to = final_url
            log.warning(
                "source.moved",
                source_id=state.source.id,
                url=state.source.url,
                final_url=final_url,
                detail="permanent redirect seen repeatedly; fetching the new URL directly. "
                "Update the url in config.toml.",
            )

    # -- reload ----------------------------------------------------------------------------

    async def _watch_config(self) -> None:
        """Reload on SIGHUP or an edit. A reload that fails for any reason (the database
        write-locked for longer than busy_timeout, say) is logged and tried again on the
        next turn: a pending reload is never dropped."""
        watcher = self.watcher
        pending = False
        while True:
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                pending = True
            elif watcher.changed():
                log.info("config.changed", path=str(self.config_path))
                await asyncio.sleep(0.2)  # let a multi-step save settle
                watcher.changed()
                pending = True
            if pending:
                try:
                    await self.reload()
                    pending = False
                except Exception as exc:
                    log.exception(
                        "config.reload_failed", path=str(self.config_path), error_message=str(exc)
                    )
                    notify.notify(f"READY=1\nSTATUS=reload failed, retrying; {self._status_line()}")
            try:
                async with asyncio.timeout(WATCH_SECONDS):
                    await self.reload_requested.wait()
            except TimeoutError:
                pass

    async def reload(self) -> bool:
        """Validate, then swap. An invalid file is logged and the old config keeps running."""
        notify.notify(notify.reloading_message())
        try:
            # Off the loop: reading a file can block (a slow disk, a network mount).
            config = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            log.error("config.invalid", path=str(self.config_path), errors=exc.errors)
            notify.notify(
                f"READY=1\nSTATUS=config.toml invalid, old config kept; {self._status_line()}"
            )
            return False
        if config.database != self.config.database:
            log.warning(
                "config.database_ignored",
                detail="changing database needs a restart",
                database=str(config.database),
            )
            config = config.model_copy(update={"database": self.config.database})
        assert self._db is not None and self._fetcher is not None
        report = await sync_sources(self._db, config)
        set_level(config.log_level)
        self._fetcher.reconfigure(config)
        if self._delivery is not None:
            await self._delivery.reconfigure(config)
        self.config = config
        changed = {
            s.id
            for s in await SourceRepo(self._db).list()
            if s.url in (*report.added, *report.updated)
        }
        await self._load_states(only=changed)
        log.info(
            "config.reloaded",
            added=len(report.added),
            updated=len(report.updated),
            disabled=len(report.disabled),
            sources=len(self.states),
        )
        notify.notify(f"READY=1\nSTATUS={self._status_line()}")
        return True

    # -- housekeeping ----------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        assert self._db is not None
        jobs = FetchJobRepo(self._db)
        last_prune: float | None = None  # the first tick prunes (monotonic may be < 1 h)
        while True:
            await asyncio.sleep(self.stats_seconds)
            if last_prune is None or time.monotonic() - last_prune >= self.prune_seconds:
                last_prune = time.monotonic()
                cutoff = to_iso(utcnow() - timedelta(days=self.config.keep_fetch_jobs_days))
                pruned = await jobs.prune(cutoff)
                if pruned:
                    log.info("jobs.pruned", jobs=pruned, before=cutoff)
                finished = await OutboxRepo(self._db).prune(cutoff)
                if finished:
                    log.info("deliveries.pruned", deliveries=finished, before=cutoff)
                if self.config.keep_posts_days:
                    before = to_iso(utcnow() - timedelta(days=self.config.keep_posts_days))
                    removed = await PostRepo(self._db).prune(before)
                    if removed:
                        log.info("posts.pruned", posts=removed, before=before)
            self._log_stats()

    # -- metrics ---------------------------------------------------------------------------

    def _update_metrics(self) -> None:
        """Set the gauges from the scheduler's state (the counters count as things happen)."""
        now = utcnow()
        states = Counter(_state_label(state.history) for state in self.states.values())
        for label in ("ok", "failing", "gone", "never_fetched"):
            metrics.SOURCES.labels(label).set(states[label])
        metrics.SOURCES.labels("disabled").set(self.disabled)
        metrics.IN_FLIGHT.set(len(self.in_flight))
        due = [item.due for item in self.heap if item.due <= now and self._current(item)]
        metrics.DUE.set(len(due))
        metrics.OLDEST_OVERDUE.set((now - min(due)).total_seconds() if due else 0.0)
        metrics.DATABASE_BYTES.set(metrics.database_bytes(self.config.database))

    async def _metrics_writer(self) -> None:
        """Write ``metrics_file`` every WRITE_SECONDS (a reload may turn it on or off)."""
        while True:
            await asyncio.sleep(metrics.WRITE_SECONDS)
            path = self.config.metrics_file
            if path is None:
                continue
            self._update_metrics()
            try:
                await asyncio.to_thread(metrics.write, path)
            except OSError as exc:
                log.warning("metrics.write_failed", path=str(path), error_message=str(exc))

    def _write_metrics_now(self) -> None:
        """The last write, at exit, so the file ends with the run's final counts."""
        path = self.config.metrics_file
        if path is None:
            return
        self._update_metrics()
        try:
            metrics.write(path)
        except OSError as exc:
            log.warning("metrics.write_failed", path=str(path), error_message=str(exc))

    def _log_stats(self) -> None:
        sent, failed, dead = self._delivery.stats.take() if self._delivery else (0, 0, 0)
        log.info(
            "stats",
            fetches_ok=self.stats.ok,
            fetches_failed=self.stats.failed,
            posts_new=self.stats.posts_new,
            deliveries_sent=sent,
            deliveries_failed=failed,
            deliveries_dead=dead,
            deliveries_in_flight=self._delivery.in_flight if self._delivery else 0,
            in_flight=len(self.in_flight),
            due_now=self.due_now(),
            sources=len(self.states),
            loop_lag_max_ms=self.lag.take_max(),
            database_bytes=metrics.database_bytes(self.config.database),
        )
        notify.notify(f"STATUS={self._status_line()}")
        self.stats.reset()

    def _status_line(self) -> str:
        return (
            f"{len(self.states)} sources, {len(self.in_flight)} fetching, "
            f"last minute: {self.stats.ok} ok, {self.stats.failed} failed"
        )

    async def _watchdog(self) -> None:
        """WATCHDOG=1 only while every long-lived task lives, the scheduler loop turns and
        the database answers: a daemon that lost a task gets restarted by systemd."""
        interval = notify.watchdog_interval()
        if interval is None:
            return
        assert self._db is not None
        while True:
            await asyncio.sleep(interval)
            self.watchdog_checks += 1
            dead = [name for name, task in self.tasks.items() if task.done()]
            if dead:
                log.error("watchdog.task_dead", tasks=dead)
                continue
            if time.monotonic() - self.heartbeat > max(interval, 5.0):
                log.error("watchdog.scheduler_stalled")
                continue
            try:
                async with asyncio.timeout(interval):
                    await self._db.fetchone("SELECT 1")
            except Exception as exc:
                log.error("watchdog.database_unresponsive", error_message=repr(exc))
                continue
            notify.notify("WATCHDOG=1")


#: Pause before a crashed task runs again: no busy loop if it fails at once every time.
RESTART_SECONDS = 1.0


async def supervised(name: str, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` for the daemon's whole life: any exception is logged and ``work``
    started again (it keeps its state on the Service, not in locals that would be lost).
    It ends when ``work`` returns (the scheduler does once stopping) or is cancelled; a
    BaseException such as SystemExit ends it too, and the watchdog then stops vouching
    for the daemon."""
    while True:
        try:
            await work()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("task.crashed", task=name, error_message=str(exc))
        await asyncio.sleep(RESTART_SECONDS)


def _state_label(history: History) -> str:
    """A scheduled source's state for the ``rssd_sources`` gauge (as ``rssd status`` says)."""
    if history.gone:
        return "gone"
    if history.failures:
        return "failing"
    return "ok" if history.ended_at is not None else "never_fetched"


async def run_service(
    config_path: Path, config: Config, watcher: FileWatcher | None = None
) -> None:
    await Service(config_path, config, watcher).run()
