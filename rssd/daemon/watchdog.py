"""systemd's watchdog: WATCHDOG=1 only while every long-lived task lives, the claim loop
turns and the database answers, so that a daemon that lost a part of itself is restarted
by systemd instead of running on without it.

A claim loop that has not turned because it is waiting for the database (a table locked
for a minute by an operator or a migration) is not hung: while the database answers a
plain query, the pings go on and ``watchdog.database_wait`` says so. Restarting every
daemon at once would not lift the lock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from rssd.daemon import notify
from rssd.logs import get_logger
from rssd.repo.db import Database

log = get_logger("rssd.daemon")

#: The claim loop may sleep this long between turns before it counts as stalled (or the
#: watchdog interval, if longer).
STALLED_AFTER = 5.0


class Watchdog:
    def __init__(
        self,
        db: Database,
        tasks: Mapping[str, asyncio.Task[None]],
        heartbeat: Callable[[], float],
        waiting: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """``tasks``: the long-lived tasks it vouches for; ``heartbeat()``: when the claim
        loop last turned (``time.monotonic``); ``waiting()``: how long it has been waiting
        for one database call (0: it is not)."""
        self._db = db
        self._tasks = tasks
        self._heartbeat = heartbeat
        self._waiting = waiting
        #: Checks made so far, pinged or not: how a test knows one has happened.
        self.checks = 0

    async def run(self) -> None:
        interval = notify.watchdog_interval()
        if interval is None:
            return
        while True:
            await asyncio.sleep(interval)
            self.checks += 1
            dead = [name for name, task in self._tasks.items() if task.done()]
            if dead:
                log.error("watchdog.task_dead", tasks=dead)
                continue
            stalled = time.monotonic() - self._heartbeat() > max(interval, STALLED_AFTER)
            waited = self._waiting()
            if stalled and waited <= 0:
                log.error("watchdog.scheduler_stalled")
                continue
            try:
                async with asyncio.timeout(interval):
                    await self._db.fetchone("SELECT 1")
            except Exception as exc:
                log.error("watchdog.database_unresponsive", error_message=repr(exc))
                continue
            if stalled:
                log.warning(
                    "watchdog.database_wait",
                    waiting_seconds=round(waited, 1),
                    detail="the scheduler is waiting for the database (a lock?); the "
                    "database answers, so the daemon is not hung",
                )
            notify.notify("WATCHDOG=1")
