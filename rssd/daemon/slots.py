"""Fetches by hand waiting for a host slot: woken one at a time as this process's fetches
of that host end, else after a timeout (a slot another process freed wakes nobody here).

Waking one waiter per ended fetch, not all of them, keeps ``run --once`` over a host with
hundreds of feeds from retrying hundreds of claims each time a slot frees. A wake is never
lost: a waiter cancelled once woken passes it to the next one. And a waiter
whose timeout ends while this process itself still holds every slot of the host
(``held``) waits on without asking the database: no other process can have freed one of
them. Without that, ``run --once`` with 1,000 workers on 100 hosts sent the database
thousands of claims a second bound to fail, and on PostgreSQL those failures, not the
fetches, were the pace.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

#: The first and the longest wait before a waiter tries again unwoken.
FIRST_WAIT_SECONDS = 0.2
LONGEST_WAIT_SECONDS = 2.0
#: The wait while this process holds every slot of the host: only its own fetches can
#: free one, and each wakes a waiter as it ends. A safety net, not a poll.
HELD_WAIT_SECONDS = 30.0


def next_wait(wait: float) -> float:
    """The wait after ``wait`` seconds went by with no slot: doubled, up to the longest."""
    return min(LONGEST_WAIT_SECONDS, wait * 2)


class SlotWaits:
    """Per host, the waiters in the order they came."""

    def __init__(self) -> None:
        self._waiting: dict[str, deque[asyncio.Future[bool]]] = {}
        self._held: dict[str, int] = {}

    def taken(self, host: str) -> None:
        """A fetch of this process took a slot of ``host`` (or asks for one)."""
        self._held[host] = self._held.get(host, 0) + 1

    def held(self, host: str) -> int:
        """The slots of ``host`` this process's fetches hold now."""
        return self._held.get(host, 0)

    async def wait(self, host: str, timeout: float) -> bool:
        """Until a fetch of ``host`` in this process ends (``freed``: True) or ``timeout``
        (False). The timeout is a plain timer that answers the waiter's future with False:
        ``asyncio.timeout`` (a cancellation turned back into an error) was a visible share
        of ``run --once``, whose workers wait here about twice a feed."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[bool] = loop.create_future()
        queue = self._waiting.setdefault(host, deque())
        queue.append(woken)
        timer = loop.call_later(timeout, _answer, woken, False)
        try:
            return await woken
        except asyncio.CancelledError:
            if _was_woken(woken):  # woken, then cancelled: the slot it was woken for
                self._wake(queue)  # goes to the next
            raise
        finally:
            timer.cancel()
            # Only a waiter still queued (timed out, cancelled) is looked for: ``_wake``
            # took a woken one out already, and a ``remove`` that misses builds its
            # error's text from the future's repr, a visible share of a busy pass.
            if not _was_woken(woken):
                with contextlib.suppress(ValueError):
                    queue.remove(woken)
            if not queue:
                self._waiting.pop(host, None)

    def released(self, host: str) -> None:
        """A slot of ``host`` taken for a claim that did not get it: another process
        holds the rest, so no waiter here is woken to be refused too."""
        held = self._held.get(host, 0) - 1
        if held > 0:
            self._held[host] = held
        else:
            self._held.pop(host, None)

    def freed(self, host: str) -> None:
        """A fetch of ``host`` that took a slot ended: the longest waiter tries again."""
        self.released(host)
        queue = self._waiting.get(host)
        if queue:
            self._wake(queue)

    @staticmethod
    def _wake(queue: deque[asyncio.Future[bool]]) -> None:
        """The longest waiter of ``queue`` still waiting, woken."""
        while queue:
            woken = queue.popleft()
            if not woken.done():
                woken.set_result(True)
                return


def _was_woken(waiter: asyncio.Future[bool]) -> bool:
    """``waiter`` was answered by ``_wake`` (True), which takes it out of its queue."""
    return waiter.done() and not waiter.cancelled() and waiter.result()


def _answer(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)
