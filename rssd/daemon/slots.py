"""Fetches by hand waiting for a host slot: woken one at a time as this process's fetches
of that host end, else after a timeout (a slot another process freed wakes nobody here).

Waking one waiter per ended fetch, not all of them, keeps ``run --once`` over a host with
hundreds of feeds from retrying hundreds of claims each time a slot frees.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

#: The first and the longest wait before a waiter tries again unwoken.
FIRST_WAIT_SECONDS = 0.2
LONGEST_WAIT_SECONDS = 2.0


def next_wait(wait: float) -> float:
    """The wait after ``wait`` seconds went by with no slot: doubled, up to the longest."""
    return min(LONGEST_WAIT_SECONDS, wait * 2)


class SlotWaits:
    """Per host, the waiters in the order they came."""

    def __init__(self) -> None:
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    async def wait(self, host: str, timeout: float) -> None:
        """Until a fetch of ``host`` in this process ends (``freed``) or ``timeout``."""
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(host, deque())
        queue.append(woken)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await woken
        finally:
            with contextlib.suppress(ValueError):
                queue.remove(woken)
            if not queue:
                self._waiting.pop(host, None)

    def freed(self, host: str) -> None:
        """A fetch of ``host`` ended: the longest waiter tries again."""
        queue = self._waiting.get(host)
        while queue:
            woken = queue.popleft()
            if not woken.done():
                woken.set_result(None)
                return
