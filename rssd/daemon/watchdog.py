"""systemd's watchdog: WATCHDOG=1 only while every long-lived task lives, the claim loop
turns and the database answers, so that a daemon that lost a part of itself is restarted
by systemd instead of running on without it."""

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
    ) -> None:
        """``tasks``: the long-lived tasks it vouches for; ``heartbeat()``: when the claim
        loop last turned (``time.monotonic``)."""
        self._db = db
        self._tasks = tasks
        self._heartbeat = heartbeat
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
            if time.monotonic() - self._heartbeat() > max(interval, STALLED_AFTER):
                log.error("watchdog.scheduler_stalled")
                continue
            try:
                async with asyncio.timeout(interval):
                    await self._db.fetchone("SELECT 1")
            except Exception as exc:
                log.error("watchdog.database_unresponsive", error_message=repr(exc))
                continue
            notify.notify("WATCHDOG=1")
