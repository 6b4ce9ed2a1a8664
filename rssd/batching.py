"""Asks made while a batch is in the database go together as the next batch.

Hundreds of fetches end (or start) in the same moments; each one's write as its own few
statements made the writer's round trips, not the work, the pace (bench/README.md). A
``Batcher`` hands the asks queued meanwhile to one call of its ``run`` (one transaction
of a few set-based statements), and each asker gets its own answer: a value, or an
exception raised to it alone. One ask alone goes at once, as a batch of one.

An asker cancelled while its ask is in the database does not see the answer: the answer
goes to ``unclaimed`` (e.g. a job claimed for a fetch that no longer runs is recorded
``interrupted``), so nothing the batch did is left without an owner.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

A = TypeVar("A")
R = TypeVar("R")

#: The answers of one batch, one per ask, in order: a value, or the exception to raise.
Run = Callable[[Sequence[A]], Awaitable[Sequence[R | Exception]]]


class Batcher(Generic[A, R]):
    def __init__(
        self,
        run: Run[A, R],
        max_batch: int,
        unclaimed: Callable[[R], Awaitable[None]] | None = None,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
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

    async def settle(self) -> None:
        """Until the batch in the database, if any, is answered (before closing it)."""
        if self._batches is not None:
            await asyncio.gather(self._batches, return_exceptions=True)

    async def _run_batches(self) -> None:
        batch: list[tuple[A, asyncio.Future[R]]] = []
        try:
            while self._asked:
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
        for (_, answer), result in zip(batch, results, strict=True):
            if answer.done():  # its asker was cancelled meanwhile
                if self._unclaimed is not None and not isinstance(result, Exception):
                    await self._unclaimed(result)
            elif isinstance(result, Exception):
                answer.set_exception(result)
            else:
                answer.set_result(result)
