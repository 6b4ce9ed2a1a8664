"""``rssd run``: the long-running service.

One asyncio loop owns: the claim loop (rssd/daemon/claimer.py: due jobs taken from the
database, fetched under the Fetcher's global and per-host limits, leases renewed); config
reload (SIGHUP or an edit of the file); housekeeping (pruning, the schedule reconciled, a
``stats`` event a minute); the systemd protocol (READY, RELOADING, STOPPING, WATCHDOG,
STATUS); and a graceful stop on SIGTERM/SIGINT. The schedule itself is in the database, so
any number of daemons can share one (PostgreSQL) and a restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import random
import secrets
import signal
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

from rssd import metrics
from rssd.clock import to_iso
from rssd.daemon import notify
from rssd.daemon.claimer import Claimer
from rssd.daemon.delivery import DeliveryLoop
from rssd.daemon.digests import digest_loop
from rssd.daemon.history import history_of
from rssd.daemon.lag import LagProbe
from rssd.daemon.loop import loop_name
from rssd.daemon.pipeline import JobReport, Pipeline
from rssd.daemon.reconcile import reconcile
from rssd.daemon.schedule import MOVED_AFTER, Activity, Policy, policy_of
from rssd.daemon.search_backfill import backfill_loop
from rssd.daemon.skew import check_skew
from rssd.daemon.startup import daemon_session, sync_sources, warn_exposed_files
from rssd.daemon.watcher import FileWatcher
from rssd.fetch.fetcher import Fetcher
from rssd.logs import bind_process, get_logger, set_level
from rssd.models.config import Config, ConfigError, load_config
from rssd.models.dto import FetchJobStatus, Source
from rssd.models.source_state import State, classify
from rssd.repo.claims import ClaimRepo
from rssd.repo.config_versions import config_hash
from rssd.repo.daemons import DaemonRepo, Identity, forget_silent
from rssd.repo.db import Database
from rssd.repo.jobs import FetchJobRepo, latest_jobs
from rssd.repo.outbox import OutboxRepo
from rssd.repo.posts import PostRepo
from rssd.repo.sources import SourceRepo
from rssd.webhooks.sender import Sender

__all__ = ["MOVED_AFTER", "Service", "history_of", "run_service"]

log = get_logger("rssd.daemon")

WATCH_SECONDS = 1.0
#: How often the ``stats`` event is logged and retention applied; the environment
#: variables RSSD_STATS_SECONDS and RSSD_PRUNE_SECONDS override them (for tests and
#: debugging: a test cannot wait a minute for a stats event).
STATS_SECONDS = 60.0
PRUNE_SECONDS = 3600.0


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


#: A daemon silent this long is forgotten from the daemons table (its jobs came back long
#: before, when their leases expired).
FORGET_DAEMONS_AFTER = timedelta(hours=1)
#: Retention runs in one daemon at a time, under this lock.
PRUNE_LOCK = "rssd.prune"


@dataclass
class Stats:
    """Counters for the minute's ``stats`` event."""

    ok: int = 0
    failed: int = 0
    posts_new: int = 0

    def take(self) -> Stats:
        """The counts so far, and zero from now on: one step, with no await in between,
        so a fetch that ends while the ``stats`` event is being put together counts in
        the next one instead of being lost."""
        taken = Stats(self.ok, self.failed, self.posts_new)
        self.ok = self.failed = self.posts_new = 0
        return taken


def new_identity() -> Identity:
    """host:pid:random, unique even when a pid is reused after a restart."""
    host = socket.gethostname()
    pid = os.getpid()
    return Identity(f"{host}:{pid}:{secrets.token_hex(3)}", host, pid)


class Service:
    def __init__(
        self, config_path: Path, config: Config, watcher: FileWatcher | None = None
    ) -> None:
        self.config_path = config_path
        self.config = config
        #: Snapshot of the file taken before it was read, so an edit made while the daemon
        #: starts up is noticed, not lost.
        self.watcher = watcher or FileWatcher(config_path)
        self.identity = new_identity()
        self.sources = 0
        self.stats = Stats()
        #: The counts of the last ``stats`` event, for systemd's STATUS line.
        self._last_minute = Stats()
        self.stats_seconds = seconds_from_env("RSSD_STATS_SECONDS", STATS_SECONDS)
        self.prune_seconds = seconds_from_env("RSSD_PRUNE_SECONDS", PRUNE_SECONDS)
        self.lag = LagProbe()
        self.stopping = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.random = random.Random()
        self._db: Database | None = None
        self._fetcher: Fetcher | None = None
        self._claimer: Claimer | None = None
        self._claims: ClaimRepo | None = None
        self._delivery: DeliveryLoop | None = None
        #: The long-lived tasks the watchdog vouches for (the watchdog itself aside).
        self.tasks: dict[str, asyncio.Task[None]] = {}
        #: Watchdog checks made so far, pinged or not: how a test knows one has happened.
        self.watchdog_checks = 0

    @property
    def in_flight(self) -> int:
        return len(self._claimer.in_flight) if self._claimer else 0

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        # Signals first: a SIGHUP during start-up (its default action kills) is a reload
        # handled once the watcher runs; a SIGTERM makes the service stop once it is up.
        self._install_signals()
        bind_process(daemon_id=self.identity.id)
        try:
            async with daemon_session(self.config, self.config_path, self.identity.id) as db:
                self._db = db
                await self._serve(db)
        finally:
            self._remove_signals()
            bind_process(daemon_id=None)

    async def _serve(self, db: Database) -> None:
        claims = ClaimRepo(db, self.identity.id)
        self._claims = claims
        daemons = DaemonRepo(db, self.identity)
        await daemons.beat(0, config_hash(self.config))
        if db.shared:
            await check_skew(db)
        await self._reconcile(log_gone=True)
        async with (
            Fetcher(self.config) as fetcher,
            Sender(self.config.webhooks, self.config.user_agent) as sender,
        ):
            self._fetcher = fetcher
            self._delivery = DeliveryLoop(db, self.config, sender)
            pipeline = Pipeline(db, fetcher, claims, self._policy)
            await pipeline.preload()
            claimer = Claimer(claims, pipeline, self._room, self._done)
            await claimer.listen(db)
            self._claimer = claimer

            async def leases() -> None:
                await claimer.lease_loop(lambda n: daemons.beat(n, config_hash(self.config)))

            self.tasks = {
                name: asyncio.create_task(supervised(name, work), name=name)
                for name, work in (
                    ("claims", claimer.claim_loop),
                    ("leases", leases),
                    ("delivery", self._delivery.run),
                    ("digests", functools.partial(digest_loop, db, self._delivery.poke)),
                    ("config-watch", self._watch_config),
                    ("housekeeping", self._housekeeping),
                    ("metrics", self._metrics_writer),
                )
            }
            tasks = [*self.tasks.values(), asyncio.create_task(self._watchdog(), name="watchdog")]
            # Not a long-lived task (the watchdog would mourn it): it ends once the search
            # index covers the posts stored before it.
            backfill = partial(backfill_loop, db)
            tasks.append(asyncio.create_task(supervised("search-backfill", backfill)))
            self.lag.start()
            notify.notify(f"READY=1\nSTATUS={self._status_line()}")
            log.info(
                "daemon.ready",
                sources=self.sources,
                pid=os.getpid(),
                loop=loop_name(),
                database=self.config.database_label,
            )
            await self.stopping.wait()
            notify.notify("STOPPING=1")
            log.info("daemon.stopping", in_flight=self.in_flight)
            # The claim loop ends by itself (never cancelled mid-claim: the jobs it took
            # would be left ONGOING until their lease ran out); the rest are cancelled.
            claimer.claiming = False
            claimer.wake.set()
            await asyncio.gather(tasks[0], return_exceptions=True)
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.lag.stop()
            await claimer.drain(self.config.shutdown_grace_seconds)
        await self._write_metrics_now()
        with contextlib.suppress(Exception):
            await daemons.leave()
        log.info("daemon.stopped")

    def _policy(self, source: Source, activity: Activity | None = None) -> Policy:
        """A source's scheduling policy (rssd.daemon.schedule.policy_of)."""
        return policy_of(source, activity)

    def _room(self) -> tuple[int, int]:
        """How many jobs this daemon holds at most, and the per-host limit. Alone on its
        database, twice max_concurrency keeps the fetch slots fed while the bookkeeping of
        finished jobs runs; sharing one, it takes no more than it can start, so that idle
        daemons get the rest."""
        assert self._db is not None
        factor = 1 if self._db.shared else 2
        return factor * self.config.max_concurrency, self.config.max_per_host

    def _done(self, outcome: JobReport | BaseException | None) -> None:
        if isinstance(outcome, BaseException):  # Pipeline.run_claim does not raise
            log.error("fetch.crashed", exc_info=outcome)
            self.stats.failed += 1
        elif outcome is not None:
            if outcome.status is FetchJobStatus.COMPLETED:
                self.stats.ok += 1
                self.stats.posts_new += outcome.posts_new
                if outcome.messages and self._delivery is not None:
                    self._delivery.poke()
            elif outcome.status is FetchJobStatus.FAILED:
                self.stats.failed += 1

    async def _reconcile(self, *, log_gone: bool = False) -> None:
        assert self._db is not None and self._claims is not None
        self.sources = len(await SourceRepo(self._db).list(enabled_only=True))
        queued = await reconcile(
            self._db, self._claims, self.random, log_gone=log_gone, policy=self._policy
        )
        if queued:
            log.info("jobs.scheduled", jobs=queued)
        if self._claimer is not None:
            self._claimer.wake.set()

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
        if self._claimer is not None:
            self._claimer.claiming = False
            self._claimer.wake.set()

    def request_reload(self, reason: str = "SIGHUP") -> None:
        log.info("config.reload_requested", trigger=reason)
        self.reload_requested.set()

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
        warn_exposed_files(config, self.config_path)
        if config.database != self.config.database:
            log.warning(
                "config.database_ignored",
                detail="changing database needs a restart",
                database=config.database_label,
            )
            config = config.model_copy(update={"database": self.config.database})
        assert self._db is not None and self._fetcher is not None
        edited = config_hash(config) != config_hash(self.config)
        report = await sync_sources(
            self._db, config, self.config_path, self.identity.id, edited=edited
        )
        set_level(config.log_level)
        self._fetcher.reconfigure(config)
        if self._delivery is not None:
            await self._delivery.reconfigure(config)
        self.config = config
        await self._reconcile(log_gone=True)
        log.info(
            "config.reloaded",
            added=len(report.added),
            updated=len(report.updated),
            disabled=len(report.disabled),
            sources=self.sources,
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
            try:
                await self._reconcile()
            except Exception as exc:
                log.error("jobs.reconcile_failed", error_message=repr(exc))
            try:  # a database that does not answer: logged, tried again next tick
                if self._db.shared:
                    await check_skew(self._db)
                if last_prune is None or time.monotonic() - last_prune >= self.prune_seconds:
                    last_prune = time.monotonic()
                    await self._prune(jobs)
                await self._log_stats()
            except Exception as exc:
                log.error("housekeeping.failed", error_message=repr(exc))

    async def _prune(self, jobs: FetchJobRepo) -> None:
        """Retention, by one daemon at a time (the others skip this round). The cutoffs
        are measured from the database's clock (``Database.now``): a daemon whose own
        clock runs days ahead must not delete what the others keep."""
        assert self._db is not None
        if not await self._db.try_lock(PRUNE_LOCK):
            return
        try:
            now = await self._db.now()
            cutoff = to_iso(now - timedelta(days=self.config.keep_fetch_jobs_days))
            pruned = await jobs.prune(cutoff)
            if pruned:
                log.info("jobs.pruned", jobs=pruned, before=cutoff)
            finished = await OutboxRepo(self._db).prune(cutoff)
            if finished:
                log.info("deliveries.pruned", deliveries=finished, before=cutoff)
            if self.config.keep_posts_days:
                before = to_iso(now - timedelta(days=self.config.keep_posts_days))
                removed = await PostRepo(self._db).prune(before)
                if removed:
                    log.info("posts.pruned", posts=removed, before=before)
            await self._db.write(lambda tx: forget_silent(tx, to_iso(now - FORGET_DAEMONS_AFTER)))
        finally:
            await self._db.unlock(PRUNE_LOCK)

    # -- metrics ---------------------------------------------------------------------------

    async def _update_metrics(self) -> None:
        """Set the gauges from the database (the counters count as things happen). The
        sources' states and what is due are the database's: on PostgreSQL, the cluster's."""
        assert self._db is not None and self._claims is not None
        every = await SourceRepo(self._db).list()
        enabled = {s.id for s in every if s.enabled}
        states = Counter(
            classify(
                enabled=True,
                gone=history_of(row).gone,
                failures=row.failures,
                succeeded=row.last_success_at is not None,
            )
            for row in await latest_jobs(self._db)
            if row.source_id in enabled
        )
        states[State.DISABLED] = len(every) - len(enabled)
        for state in State:
            metrics.SOURCES.labels(state.value).set(states[state])
        metrics.IN_FLIGHT.set(self.in_flight)
        metrics.DUE.set(await self._claims.count_due())
        metrics.OLDEST_OVERDUE.set(await self._claims.overdue_seconds())
        metrics.DATABASE_BYTES.set(await self._db.size_bytes())

    async def _metrics_writer(self) -> None:
        """Write ``metrics_file`` every WRITE_SECONDS (a reload may turn it on or off)."""
        while True:
            await asyncio.sleep(metrics.WRITE_SECONDS)
            path = self.config.metrics_file
            if path is None:
                continue
            await self._update_metrics()
            try:
                await asyncio.to_thread(metrics.write, path)
            except OSError as exc:
                log.warning("metrics.write_failed", path=str(path), error_message=str(exc))

    async def _write_metrics_now(self) -> None:
        """The last write, at exit, so the file ends with the run's final counts."""
        path = self.config.metrics_file
        if path is None:
            return
        try:
            await self._update_metrics()
            metrics.write(path)
        except OSError as exc:
            log.warning("metrics.write_failed", path=str(path), error_message=str(exc))
        except Exception as exc:  # the database went away: the counters still get written
            log.warning("metrics.update_failed", error_message=repr(exc))
            with contextlib.suppress(OSError):
                metrics.write(path)

    async def _log_stats(self) -> None:
        assert self._claims is not None and self._db is not None
        minute = self.stats.take()
        sent, failed, dead = self._delivery.stats.take() if self._delivery else (0, 0, 0)
        log.info(
            "stats",
            fetches_ok=minute.ok,
            fetches_failed=minute.failed,
            posts_new=minute.posts_new,
            deliveries_sent=sent,
            deliveries_failed=failed,
            deliveries_dead=dead,
            deliveries_in_flight=self._delivery.in_flight if self._delivery else 0,
            in_flight=self.in_flight,
            due_now=await self._claims.count_due(),
            sources=self.sources,
            loop_lag_max_ms=self.lag.take_max(),
            database_bytes=await self._db.size_bytes(),
        )
        self._last_minute = minute
        notify.notify(f"STATUS={self._status_line()}")

    def _status_line(self) -> str:
        minute = self._last_minute
        return (
            f"{self.sources} sources, {self.in_flight} fetching, "
            f"last minute: {minute.ok} ok, {minute.failed} failed"
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
            heartbeat = self._claimer.heartbeat if self._claimer else time.monotonic()
            if time.monotonic() - heartbeat > max(interval, 5.0):
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


async def run_service(
    config_path: Path, config: Config, watcher: FileWatcher | None = None
) -> None:
    await Service(config_path, config, watcher).run()
