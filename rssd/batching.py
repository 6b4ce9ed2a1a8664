"""Asks made while a batch is in the database go together as the next batch.

Hundreds of fetches end (or start) in the same moments; each one's write as its own few
statements made the writer's round trips, not the work, the pace (bench/README.md). A
``Batcher`` hands the asks queued meanwhile to one call of its ``run`` (one transaction
of a few set-based statements), and each asker gets its own answer: a value, or an
exception raised to it alone. One ask alone goes at once, as a batch of one.

An asker cancelled while its ask is in the database does not see the answer: the answer
goes to ``unclaimed`` (e.g. a job claimed for a fetch that no longer runs is recorded
``interrupted``), so nothing the batch did is left without an owner.

A ``linger`` holds a batch of fewer than ``few`` asks that long before it goes, for more
asks to join it. Where asks trickle in (fetches end one by one), the database is fast
enough that without one a batch held two or three, and each batch's fixed cost (a
transaction, a hand-off to the writer's thread and back) was most of the cost of a check
that changed nothing (bench/README.md). Asks that come together (a claimer completing
the 50 jobs it claimed) are company enough and go at once. ``hold`` is held while a batch
lingers: the database's ``hold_writes``, so that the other writes made meanwhile (the next
claims) wait for the batch and share its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")

#: The answers of one batch, one per ask, in order: a value, or the exception to raise.
Run = Callable[[Sequence[A]], Awaitable[Sequence[R | Exception]]]

#: Answers handed out per turn of the event loop. Each wakes its asker, which may start a
#: request at once, so a turn of 500 answers holds the loop for a while; the loop's
#: timers run between turns. Smaller is gentler on the loop but starts a batch's requests
#: over more turns, in which the first ones end: in bench/run.py (500 slots, `run
#: --once`), turns of 64 kept the loop lag to ~50 ms on PostgreSQL but the peak in flight
#: to 317-396 of 500; turns of 250, 493-497 with lags of 66-99 ms (144 ms once, cold).
ANSWER_CHUNK = 250


class Batcher(Generic[A, R]):
    def __init__(
        self,
        run: Run[A, R],
        max_batch: int,
        unclaimed: Callable[[R], Awaitable[None]] | None = None,
        *,
        linger: float = 0.0,
        few: int = 0,
        hold: Callable[[], AbstractContextManager[None]] | None = None,
    ) -> None:
        self._run = run
        self._hold = hold or contextlib.nullcontext
        self._max_batch = max_batch
        self._linger = linger
        self._few = min(few, max_batch)
        self._unclaimed = unclaimed
        self._asked: list[tuple[A, asyncio.Future[R]]] = []
        self._batches: asyncio.Task[None] | None = None

    async def ask(self, item: A) -> R:
        """The answer to ``item``, from the batch it goes in."""
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._asked.append((item, answer))
        if self._batches is None or self._batches.done():
            self._batches = asyncio.create_task(self._run_batches(), name="batches")
        return await answer

    @property
    def forming(self) -> bool:
        """Whether asks are waiting for the next batch (lingering, or about to go): one
        made now goes with them."""
        return bool(self._asked)

    async def settle(self) -> None:
        """Until the batch in the database, if any, is answered (before closing it)."""
        if self._batches is not None:
            await asyncio.gather(self._batches, return_exceptions=True)

    async def _run_batches(self) -> None:
        batch: list[tuple[A, asyncio.Future[R]]] = []
        try:
            while self._asked:
                if self._linger and len(self._asked) < self._few:
                    with self._hold():
                        await asyncio.sleep(self._linger)
                else:
                    await asyncio.sleep(0)  # the tasks woken in this turn of the loop ask too
                batch = self._asked[: self._max_batch]
                self._asked = self._asked[self._max_batch :]
                await self._answer(batch)
        finally:  # cancelled (the loop is closing): nobody is left waiting for ever
            for _, answer in [*batch, *self._asked]:
                if not answer.done():
                    answer.cancel()

    async def _answer(self, batch: list[tuple[A, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except Exception as exc:  # the whole batch failed: each asker hears why
            results = [exc] * len(batch)
        answers = [(answer, result) for (_, answer), result in zip(batch, results, strict=True)]
        for index, (answer, result) in enumerate(answers):
            if index and index % ANSWER_CHUNK == 0:
                try:
                    await asyncio.sleep(0)  # the askers woken so far run, and the timers
                except asyncio.CancelledError:  # the rest are answered now, not dropped
                    for late, value in answers[index:]:
                        _set(late, value)
                    raise
            if answer.done():  # its asker was cancelled meanwhile
                if self._unclaimed is not None and not isinstance(result, Exception):
                    await self._unclaimed(result)
            else:
                _set(answer, result)


def _set(answer: asyncio.Future[R], result: R | Exception) -> None:
    """``result`` to the asker waiting on ``answer``, unless it stopped waiting."""
    if answer.done():
        return
    if isinstance(result, Exception):
        answer.set_exception(result)
    else:
        answer.set_result(result)
