"""Housekeeping of a running daemon, every tick: the schedule reconciled (sources that
have no job get one), the clocks compared on a shared database, retention applied (every
``prune_every``, by one daemon at a time) and the ``stats`` event logged. A tick that
fails is logged and the next one tries again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from rssd.clock import to_iso
from rssd.daemon.skew import check_skew
from rssd.logs import get_logger
from rssd.models.config import Config
from rssd.repo.daemons import forget_silent
from rssd.repo.db import Database
from rssd.repo.hosts import HostRepo
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.outbox import OutboxRepo
from rssd.repo.posts import PostRepo

log = get_logger("rssd.daemon")

#: A daemon silent this long is forgotten from the daemons table (its jobs came back long
#: before, when their leases expired).
FORGET_DAEMONS_AFTER = timedelta(hours=1)
#: A host whose gap and pause ended this long ago loses its row (it restrains nothing).
FORGET_HOSTS_AFTER = timedelta(hours=1)
#: Retention runs in one daemon at a time, under this lock.
PRUNE_LOCK = "rssd.prune"


async def apply_retention(db: Database, config: Config) -> None:
    """Retention, by one daemon at a time (the others skip this round). The cutoffs are
    measured from the database's clock (``Database.now``): a daemon whose own clock runs
    days ahead must not delete what the others keep."""
    if not await db.try_lock(PRUNE_LOCK):
        return
    try:
        now = await db.now()
        cutoff = to_iso(now - timedelta(days=config.keep_fetch_jobs_days))
        pruned = await FetchJobRepo(db).prune(cutoff)
        if pruned:
            log.info("jobs.pruned", jobs=pruned, before=cutoff)
        finished = await OutboxRepo(db).prune(cutoff)
        if finished:
            log.info("deliveries.pruned", deliveries=finished, before=cutoff)
        if config.keep_posts_days:
            before = to_iso(now - timedelta(days=config.keep_posts_days))
            removed = await PostRepo(db).prune(before)
            if removed:
                log.info("posts.pruned", posts=removed, before=before)
        await db.write(lambda tx: forget_silent(tx, to_iso(now - FORGET_DAEMONS_AFTER)))
        await HostRepo(db).forget_idle(to_iso(now - FORGET_HOSTS_AFTER))
    finally:
        await db.unlock(PRUNE_LOCK)


class Housekeeping:
    def __init__(
        self,
        db: Database,
        config: Callable[[], Config],
        reconcile: Callable[[], Awaitable[None]],
        log_stats: Callable[[], Awaitable[None]],
        *,
        every: float,
        prune_every: float,
    ) -> None:
        """``config()``: the config now (a reload may change it); ``reconcile`` and
        ``log_stats``: the service's, run each tick."""
        self._db = db
        self._config = config
        self._reconcile = reconcile
        self._log_stats = log_stats
        self.every = every
        self.prune_every = prune_every

    async def run(self) -> None:
        last_prune: float | None = None  # the first tick prunes (monotonic may be < 1 h)
        while True:
            await asyncio.sleep(self.every)
            try:
                await self._reconcile()
            except Exception as exc:
                log.error("jobs.reconcile_failed", error_message=repr(exc))
            try:  # a database that does not answer: logged, tried again next tick
                if self._db.shared:
                    await check_skew(self._db)
                if last_prune is None or time.monotonic() - last_prune >= self.prune_every:
                    last_prune = time.monotonic()
                    await apply_retention(self._db, self._config())
                await self._log_stats()
            except Exception as exc:
                log.error("housekeeping.failed", error_message=repr(exc))
