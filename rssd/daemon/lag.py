"""Event-loop lag: how late the loop wakes a sleeper. The figure that shows the loop is
never blocked (parsing and SQLite run elsewhere); reported in ``stats`` and ``run.summary``."""

from __future__ import annotations

import asyncio
import time

from rssd import metrics

PROBE_SECONDS = 0.1


class LagProbe:
    def __init__(self, period: float = PROBE_SECONDS) -> None:
        self.period = period
        self.max_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lag-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def take_max(self) -> float:
        """The worst lag since the last call, in ms; resets it."""
        worst, self.max_ms = self.max_ms, 0.0
        return round(worst, 1)

    async def _run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(self.period)
            lag = max(0.0, time.monotonic() - start - self.period)
            metrics.LOOP_LAG.observe(lag)
            self.max_ms = max(self.max_ms, lag * 1000)
