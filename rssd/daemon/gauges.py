"""The daemon's gauges, set from the database just before each write of ``metrics_file``
(the counters count where things happen). The sources' states and what is due are the
database's: on PostgreSQL, the whole cluster's."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from rssd import metrics
from rssd.daemon.history import history_of
from rssd.logs import get_logger
from rssd.models.source_state import State, classify
from rssd.repo.claims import ClaimRepo
from rssd.repo.db import Database
from rssd.repo.jobs import latest_jobs
from rssd.repo.posts import PostRepo
from rssd.repo.sources import SourceRepo

log = get_logger("rssd.daemon")

#: The longest the database's gauges may take before the file is written without them.
UPDATE_SECONDS = 5.0


class Gauges:
    def __init__(
        self,
        db: Database,
        claims: ClaimRepo,
        in_flight: Callable[[], int],
        metrics_file: Callable[[], Path | None],
        waiting: Callable[[], float] = lambda: 0.0,
    ) -> None:
        """``metrics_file()``: where to write now (a reload may turn it on or off);
        ``waiting()``: how long the scheduler has been waiting for the database."""
        self._db = db
        self._claims = claims
        self._in_flight = in_flight
        self._metrics_file = metrics_file
        self._waiting = waiting

    async def update(self) -> None:
        """Set the gauges from the database."""
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
        metrics.IN_FLIGHT.set(self._in_flight())
        metrics.DUE.set(await self._claims.count_due())
        metrics.OLDEST_OVERDUE.set(await self._claims.overdue_seconds())
        metrics.DATABASE_BYTES.set(await self._db.size_bytes())
        metrics.POSTS_STORED.set(await PostRepo(self._db).count())

    async def run(self) -> None:
        """Write ``metrics_file`` every WRITE_SECONDS."""
        while True:
            await asyncio.sleep(metrics.WRITE_SECONDS)
            path = self._metrics_file()
            if path is None:
                continue
            metrics.DATABASE_WAIT.set(self._waiting())
            # Bounded: with a table locked, the gauges read from it would wait, and the
            # file (the wait above in it) with them. They keep their last values.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(UPDATE_SECONDS):
                    await self.update()
            try:
                await asyncio.to_thread(metrics.write, path)
            except OSError as exc:
                log.warning("metrics.write_failed", path=str(path), error_message=str(exc))

    async def write_now(self) -> None:
        """The last write, at exit, so the file ends with the run's final counts."""
        path = self._metrics_file()
        if path is None:
            return
        try:
            await self.update()
            metrics.write(path)
        except OSError as exc:
            log.warning("metrics.write_failed", path=str(path), error_message=str(exc))
        except Exception as exc:  # the database went away: the counters still get written
            log.warning("metrics.update_failed", error_message=repr(exc))
            with contextlib.suppress(OSError):
                metrics.write(path)
