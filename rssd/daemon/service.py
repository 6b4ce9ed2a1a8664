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
import signal
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from msgspec import Struct

from rssd import metrics
from rssd.daemon import notify
from rssd.daemon.claimer import Claimer
from rssd.daemon.delivery import DeliveryLoop
from rssd.daemon.digests import digest_loop
from rssd.daemon.gauges import Gauges
from rssd.daemon.history import history_of
from rssd.daemon.housekeeping import Housekeeping
from rssd.daemon.lag import LagProbe
from rssd.daemon.loop import loop_name
from rssd.daemon.pipeline import JobReport, Pipeline
from rssd.daemon.reconcile import reconcile
from rssd.daemon.reload import ConfigWatch
from rssd.daemon.schedule import MOVED_AFTER, Activity, Policy, policy_of
from rssd.daemon.search_backfill import backfill_loop
from rssd.daemon.skew import check_skew
from rssd.daemon.startup import daemon_session, sync_sources, warn_exposed_files
from rssd.daemon.watchdog import Watchdog
from rssd.daemon.watcher import FileWatcher
from rssd.fetch.fetcher import Fetcher
from rssd.logs import bind_process, get_logger, set_level
from rssd.models.config import Config, ConfigError, load_config
from rssd.models.dto import FetchJobStatus, Source
from rssd.models.location import config_mtime
from rssd.repo.claims import ClaimRepo
from rssd.repo.config_versions import config_hash
from rssd.repo.daemons import DaemonRepo, new_identity
from rssd.repo.db import Database
from rssd.repo.sources import SourceRepo
from rssd.webhooks.sender import Sender

__all__ = ["MOVED_AFTER", "Service", "history_of", "run_service"]

log = get_logger("rssd.daemon")

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


class Stats(Struct):
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


class Running(Struct, frozen=True):
    """The parts of a service that has started, built once its database is open: none of
    them is ever missing while it runs."""

    db: Database
    claims: ClaimRepo
    fetcher: Fetcher
    delivery: DeliveryLoop
    claimer: Claimer


class Service:
    """The process's lifecycle, signals and the parts' wiring; each long-lived job is its
    own service: the claim loop (rssd/daemon/claimer.py), deliveries, the config watch
    (rssd/daemon/reload.py), housekeeping, the gauges and the watchdog."""

    def __init__(
        self,
        config_path: Path,
        config: Config,
        watcher: FileWatcher | None = None,
        mtime: str | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        #: The file's mtime, taken before ``config`` was read from it: what the start's
        #: sync records (rssd/daemon/run.py).
        self.config_mtime = mtime
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
        #: Set once every part is up (``_serve``), for the whole run.
        self._running: Running | None = None
        #: The long-lived tasks the watchdog vouches for (the watchdog itself aside).
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.watchdog: Watchdog | None = None

    @property
    def in_flight(self) -> int:
        return len(self._running.claimer.in_flight) if self._running else 0

    @property
    def watchdog_checks(self) -> int:
        """Watchdog checks made so far, pinged or not: how a test knows one has happened."""
        return self.watchdog.checks if self.watchdog else 0

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        # Signals first: a SIGHUP during start-up (its default action kills) is a reload
        # handled once the watcher runs; a SIGTERM makes the service stop once it is up.
        self._install_signals()
        bind_process(daemon_id=self.identity.id)
        # Always on in the service: a reload may set metrics_file, and its counters count
        # from the start.
        metrics.enable()
        try:
            async with daemon_session(
                self.config, self.config_path, self.identity.id, mtime=self.config_mtime
            ) as db:
                await self._serve(db)
        finally:
            self._remove_signals()
            bind_process(daemon_id=None)

    async def _serve(self, db: Database) -> None:
        claims = ClaimRepo(db, self.identity.id)
        daemons = DaemonRepo(db, self.identity)
        await daemons.beat(0, config_hash(self.config))
        if db.shared:
            await check_skew(db)
        await self._reconcile(db, claims, log_gone=True)
        async with (
            Fetcher(self.config) as fetcher,
            Sender(self.config.webhooks, self.config.user_agent) as sender,
        ):
            delivery = DeliveryLoop(db, self.config, sender, self.identity.id)
            pipeline = Pipeline(db, fetcher, claims, self._policy)
            await pipeline.preload()
            fetcher.prepare_parsing()  # the pool's imports now, not amid the first fetches
            claimer = Claimer(
                claims,
                pipeline,
                functools.partial(self._room, db),
                functools.partial(self._done, delivery),
            )
            await claimer.listen(db)
            running = Running(db, claims, fetcher, delivery, claimer)
            self._running = running
            if self.stopping.is_set():  # a SIGTERM during start-up
                claimer.stop()
            gauges = Gauges(
                db,
                claims,
                lambda: self.in_flight,
                lambda: self.config.metrics_file,
                claimer.waiting_on_database,
            )
            housekeeping = Housekeeping(
                db,
                lambda: self.config,
                lambda: self._reconcile(db, claims),
                functools.partial(self._log_stats, running),
                every=self.stats_seconds,
                prune_every=self.prune_seconds,
            )
            watch = ConfigWatch(
                self.config_path,
                self.watcher,
                self.reload_requested,
                self.reload,
                self._status_line,
            )

            async def leases() -> None:
                await claimer.lease_loop(
                    lambda n: daemons.beat(
                        n, config_hash(self.config), claimer.waiting_on_database()
                    )
                )

            self.tasks = {
                name: asyncio.create_task(supervised(name, work), name=name)
                for name, work in (
                    ("claims", claimer.claim_loop),
                    ("leases", leases),
                    ("delivery", delivery.run),
                    ("digests", functools.partial(digest_loop, db, delivery.poke)),
                    ("config-watch", watch.run),
                    ("housekeeping", housekeeping.run),
                    ("metrics", gauges.run),
                )
            }
            self.watchdog = Watchdog(
                db, self.tasks, lambda: claimer.heartbeat, claimer.waiting_on_database
            )
            tasks = [
                *self.tasks.values(),
                asyncio.create_task(self.watchdog.run(), name="watchdog"),
            ]
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
            claimer.stop()
            await asyncio.gather(tasks[0], return_exceptions=True)
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.lag.stop()
            await claimer.drain(self.config.shutdown_grace_seconds)
            await pipeline.settle()
        await gauges.write_now()
        with contextlib.suppress(Exception):
            await daemons.leave()
        log.info("daemon.stopped")

    def _policy(self, source: Source, activity: Activity | None = None) -> Policy:
        """A source's scheduling policy (rssd.daemon.schedule.policy_of)."""
        return policy_of(source, activity)

    def _room(self, db: Database) -> tuple[int, int]:
        """How many jobs this daemon holds at most, and the per-host limit. Alone on its
        database, twice max_concurrency keeps the fetch slots fed while the bookkeeping of
        finished jobs runs; sharing one, it takes no more than it can start, so that idle
        daemons get the rest."""
        factor = 1 if db.shared else 2
        return factor * self.config.max_concurrency, self.config.max_per_host

    def _done(self, delivery: DeliveryLoop, outcome: JobReport | BaseException | None) -> None:
        if isinstance(outcome, BaseException):  # Pipeline.run_claim does not raise
            log.error("fetch.crashed", exc_info=outcome)
            self.stats.failed += 1
        elif outcome is not None:
            if outcome.status is FetchJobStatus.COMPLETED:
                self.stats.ok += 1
                self.stats.posts_new += outcome.posts_new
                if outcome.messages:
                    delivery.poke()
            elif outcome.status is FetchJobStatus.FAILED:
                self.stats.failed += 1

    async def _reconcile(self, db: Database, claims: ClaimRepo, *, log_gone: bool = False) -> None:
        self.sources = len(await SourceRepo(db).list(enabled_only=True))
        queued = await reconcile(db, claims, self.random, log_gone=log_gone, policy=self._policy)
        if queued:
            log.info("jobs.scheduled", jobs=queued)
        if self._running is not None:
            self._running.claimer.wake.set()

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
        if self._running is not None:
            self._running.claimer.stop()

    def request_reload(self, reason: str = "SIGHUP") -> None:
        log.info("config.reload_requested", trigger=reason)
        self.reload_requested.set()

    # -- reload ----------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Validate, then swap. An invalid file is logged and the old config keeps running."""
        running = self._running
        assert running is not None, "reloads start once the service runs"
        notify.notify(notify.reloading_message())
        try:
            # Off the loop: reading a file can block (a slow disk, a network mount). The
            # mtime first: an edit made while the file is read has another.
            mtime, config = await asyncio.to_thread(_stamped_config, self.config_path)
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
            config = replace(config, database=self.config.database)
        edited = config_hash(config) != config_hash(self.config)
        report = await sync_sources(
            running.db, config, self.config_path, self.identity.id, edited=edited, mtime=mtime
        )
        set_level(config.log_level)
        running.fetcher.reconfigure(config)
        await running.delivery.reconfigure(config)
        self.config = config
        await self._reconcile(running.db, running.claims, log_gone=True)
        log.info(
            "config.reloaded",
            added=len(report.added),
            updated=len(report.updated),
            disabled=len(report.disabled),
            sources=self.sources,
        )
        notify.notify(f"READY=1\nSTATUS={self._status_line()}")
        return True

    # -- the stats event -------------------------------------------------------------------

    async def _log_stats(self, running: Running) -> None:
        minute = self.stats.take()
        sent, failed, dead = running.delivery.stats.take()
        log.info(
            "stats",
            fetches_ok=minute.ok,
            fetches_failed=minute.failed,
            posts_new=minute.posts_new,
            deliveries_sent=sent,
            deliveries_failed=failed,
            deliveries_dead=dead,
            deliveries_in_flight=running.delivery.in_flight,
            in_flight=self.in_flight,
            due_now=await running.claims.count_due(),
            sources=self.sources,
            loop_lag_max_ms=self.lag.take_max(),
            database_bytes=await running.db.size_bytes(),
        )
        self._last_minute = minute
        notify.notify(f"STATUS={self._status_line()}")

    def _status_line(self) -> str:
        minute = self._last_minute
        return (
            f"{self.sources} sources, {self.in_flight} fetching, "
            f"last minute: {minute.ok} ok, {minute.failed} failed"
        )


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


def _stamped_config(path: Path) -> tuple[str | None, Config]:
    """config.toml's mtime, then the config read from it (a thread's work: both touch the
    file system)."""
    mtime = config_mtime(path)
    return mtime, load_config(path)


async def run_service(
    config_path: Path,
    config: Config,
    watcher: FileWatcher | None = None,
    mtime: str | None = None,
) -> None:
    await Service(config_path, config, watcher, mtime).run()
