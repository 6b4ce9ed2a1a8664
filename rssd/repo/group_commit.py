"""What both backends' writers share: the writer thread, a queued write and its outcome.

Group commit is one policy on two backends (rssd/repo/sqlite_writer.py,
rssd/repo/pg_writer.py): the writes queued while one commits go into the next transaction
together, each in a savepoint of its own, so a failing write rolls back alone and its
exception reaches only its own caller.

Both run in a thread of their own (``ThreadWriter``) with a connection of its own, batch
after batch, and hand each batch's outcomes back to the event loop in one call. A work's
statements are coroutines that never suspend there (the backend's thread ``Tx`` calls the
driver directly), so one ``send`` runs a whole work (``run_to_end``). A writer that ran on
the event loop instead paid a turn of the loop for every statement: with a thousand
fetches in flight that turn is milliseconds, and the writer, not the network or the
database, set the pace (bench/README.md, "Profiles" and "PostgreSQL per check").
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from msgspec import Struct

from rssd.repo.db import Tx

T = TypeVar("T")

Work = Callable[[Tx], Awaitable[Any]]


class Outcome(Struct, frozen=True):
    """What one queued item came to: its result, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None


def run_to_end(work: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine that never suspends to its end, in the calling thread.

    A write ``work`` awaits only its thread ``Tx``'s statements; one that awaited anything
    else (a sleep, another database) could not go on in the writer's thread, and is a
    programming error, reported as such."""
    try:
        work.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    work.close()
    raise RuntimeError("a write transaction awaited something other than its statements")


def run_work(work: Work, tx: Tx) -> Any:
    """``work`` run whole on ``tx``, in the calling thread (``run_to_end``)."""
    awaitable = work(tx)
    if isinstance(awaitable, Coroutine):
        return run_to_end(awaitable)

    async def wrap() -> Any:
        return await awaitable

    return run_to_end(wrap())


#: A queued item: a write (a transaction of the batch) or a call (run on its own,
#: outside any transaction: SQLite's VACUUM), with the future its outcome goes to.
Item = tuple[bool, Callable[..., Any], asyncio.Future[Outcome]]
_STOP = object()


class ThreadWriter:
    """The writer thread: takes what queued up (up to ``max_batch`` items), commits the
    writes among them as one batch (``commit``, a backend's), runs the calls in their
    place, and settles the callers' futures. Subclasses give ``commit``, ``call_now`` and
    ``close_connection``."""

    max_batch = 64
    closed_error: type[Exception] = RuntimeError

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[Item | object] = queue.SimpleQueue()
        #: Commits so far: fewer than writes when writes share them.
        self.commits = 0
        #: While a holder lingers (``held``): the writes submitted meanwhile wait for it.
        self._holds = 0
        self._released: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._serve, name=name)
        # A daemon thread: a process that ends without closing (a crash) must not hang
        # on it; the database rolls back a transaction that was cut short.
        self._thread.daemon = True
        self._thread.start()

    def commit(self, works: list[Work]) -> list[Outcome]:
        """The works as one transaction, a savepoint each; raises when the transaction
        itself fails (every work fails with it)."""
        raise NotImplementedError

    def call_now(self, fn: Callable[..., Any]) -> Any:
        """Run ``fn`` on the writer's thread, outside any transaction."""
        raise NotImplementedError

    def close_connection(self) -> None:
        raise NotImplementedError

    async def write(self, work: Work) -> Any:
        """Queue ``work``; its result once its batch committed (or its exception)."""
        return await self._submit(True, work)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """While inside: writes submitted wait, and go when the last holder leaves, in the
        same turn of the event loop as the holder's own write, so in the same commit.

        For a batch that lingers for company (the completions, rssd/repo/jobs.py): the
        claims made meanwhile joined the next commit of their own, so a pass of ``run
        --once`` committed twice as often as it needed, and each commit has a fixed cost
        (the writer's thread wakes, BEGIN, COMMIT, the pages written to the WAL again).
        A write waits at most as long as the holder lingers."""
        if self._released is None:
            self._released = asyncio.get_running_loop().create_future()
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            if self._holds == 0 and self._released is not None:
                released, self._released = self._released, None
                released.set_result(None)

    async def _submit(self, transactional: bool, fn: Callable[..., Any]) -> Any:
        if transactional and self._released is not None:
            # Shielded: a waiter cancelled here must not cancel the others' wait.
            await asyncio.shield(self._released)
        if not self._thread.is_alive():
            raise self.closed_error("the database writer is closed")
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.put((transactional, fn, done))
        outcome = await done
        if outcome.error is not None:
            raise outcome.error
        return outcome.value

    async def close(self) -> None:
        """Finish what is queued, then stop the thread and close the connection."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            await asyncio.to_thread(self._thread.join)

    def _serve(self) -> None:
        try:
            while True:
                items = self._take()
                stop = items and items[-1] is _STOP
                if stop:
                    items.pop()
                self._run(items)  # type: ignore[arg-type]
                if stop:
                    return
        finally:
            self.close_connection()

    def _take(self) -> list[Item | object]:
        """The next item (waiting for it), and whatever else queued up meanwhile."""
        items = [self._queue.get()]
        while len(items) < self.max_batch and items[-1] is not _STOP:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _run(self, items: list[Item]) -> None:
        """Consecutive writes as one batch; a call on its own, in its place."""
        settled: list[tuple[asyncio.Future[Outcome], Outcome]] = []
        batch: list[Item] = []
        for item in [*items, None]:
            if item is not None and item[0]:
                batch.append(item)
                continue
            if batch:
                settled += zip([done for _, _, done in batch], self._commit(batch), strict=True)
                batch = []
            if item is not None:
                _, fn, done = item
                settled.append((done, self._outcome_of(fn)))
        _settle(settled)

    def _commit(self, batch: list[Item]) -> list[Outcome]:
        try:
            outcomes = self.commit([fn for _, fn, _ in batch])
        except Exception as exc:
            return [Outcome(error=exc)] * len(batch)
        self.commits += 1
        return outcomes

    def _outcome_of(self, fn: Callable[..., Any]) -> Outcome:
        try:
            return Outcome(value=self.call_now(fn))
        except Exception as exc:
            return Outcome(error=exc)


def _settle(settled: list[tuple[asyncio.Future[Outcome], Outcome]]) -> None:
    """Hand the outcomes to their loops: one wake-up per loop, not one per caller."""
    by_loop: defaultdict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Outcome]]]
    by_loop = defaultdict(list)
    for done, outcome in settled:
        by_loop[done.get_loop()].append((done, outcome))
    for loop, pairs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_set_results, pairs)


def _set_results(pairs: list[tuple[asyncio.Future[Outcome], Outcome]]) -> None:
    for done, outcome in pairs:
        if not done.done():
            done.set_result(outcome)
