"""The SQLite writer: one thread with its own connection, committing writes in groups.

Every write transaction of the process goes through here: callers queue a ``work`` and
await its outcome; the thread takes whatever has queued up (up to MAX_BATCH works) into
one BEGIN IMMEDIATE ... COMMIT, each work in a savepoint of its own (run_batch), and hands
the outcomes back to the event loop in one call. Batch follows batch inside the thread,
without a round trip through the event loop between them: with a thousand fetches in
flight the loop is busy, and a writer that waited for it between commits kept claims and
completions queued for half a second each (bench/README.md, "Profiles").

A work's statements (ThreadTx) are coroutines that never suspend, so one ``send`` runs
the whole work on this thread. Reads stay on the aiosqlite connection: under WAL they
never wait for this one, and see each commit as soon as it is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from rssd.repo.db import Params, Row, Tx
from rssd.repo.dialect import SQLITE
from rssd.repo.group_commit import Outcome, Work

T = TypeVar("T")

#: Where the writer's statement journals and temporary tables live (see ``Writer.connect``).
TEMP_STORE = "MEMORY"

#: The most write transactions one commit carries: enough for a burst of fetches ending
#: together, few enough that a commit that fails takes a bounded number of them with it.
MAX_BATCH = 256


class ThreadTx(Tx):
    """Statements of a write transaction that runs whole in the writer's thread.

    The methods are coroutines (the ``Tx`` interface) but never suspend: each calls
    sqlite3 directly, so the whole ``work`` coroutine runs with one ``send``.
    """

    dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params | None = None) -> int:
        return self._conn.execute(sql, params or {}).rowcount

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        self._conn.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        return self._conn.execute(sql, params or {}).fetchall()


def run_to_end(work: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine that never suspends to its end, in the calling thread.

    A write ``work`` awaits only its ``ThreadTx`` statements; one that awaited anything
    else (a sleep, another database) could not go on in the writer's thread, and is a
    programming error, reported as such."""
    try:
        work.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    work.close()
    raise RuntimeError("a write transaction awaited something other than its statements")


def run_batch(works: Sequence[Work], conn: sqlite3.Connection) -> list[Outcome]:
    """Several callers' write transactions as one BEGIN IMMEDIATE ... COMMIT, each in a
    savepoint of its own.

    A work that raises is rolled back to its savepoint and gets its exception; the others
    commit. Each work still sees all-or-nothing, and the order of the calls; what is
    shared is the commit. Raises, failing the whole batch, only when the transaction
    itself fails (BEGIN, COMMIT, or SQLite rolling everything back, as on a full disk).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        outcomes = [_savepoint(conn, work) for work in works]
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return outcomes


def _savepoint(conn: sqlite3.Connection, work: Work) -> Outcome:
    conn.execute("SAVEPOINT work")
    try:
        value = run_to_end(_as_coroutine(work(ThreadTx(conn))))
    except Exception as exc:
        if not conn.in_transaction:
            raise  # SQLite ended the transaction: nothing of the batch stands
        conn.execute("ROLLBACK TO work")
        conn.execute("RELEASE work")
        return Outcome(error=exc)
    conn.execute("RELEASE work")
    return Outcome(value=value)


def _as_coroutine(awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
    if isinstance(awaitable, Coroutine):
        return awaitable

    async def wrap() -> T:
        return await awaitable

    return wrap()


def vacuum_on_disk(conn: sqlite3.Connection) -> None:
    """VACUUM with its copy of the database in a temporary file, not in memory (the
    writer's ``temp_store``), then the writer's setting again."""
    conn.execute("PRAGMA temp_store = FILE")
    try:
        conn.execute("VACUUM")
    finally:
        conn.execute(f"PRAGMA temp_store = {TEMP_STORE}")


#: A queued item: a write (a transaction of the batch) or a call (run on its own,
#: outside any transaction: VACUUM), with the future its outcome goes to.
_Item = tuple[bool, Callable[..., Any], asyncio.Future[Outcome]]
_STOP = object()


class Writer:
    """The writer thread and its connection (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        #: Commits so far: fewer than writes when writes share them.
        self.commits = 0
        self._thread = threading.Thread(target=self._serve, name="rssd-sqlite-writer")
        # A daemon thread: a process that ends without closing (a crash) must not hang
        # on it; SQLite rolls back a transaction that was cut short.
        self._thread.daemon = True
        self._thread.start()

    @classmethod
    def connect(cls, target: str, *, uri: bool, busy_timeout_ms: int) -> Writer:
        conn = sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")  # per connection, as WAL advises
        # Each work runs in a savepoint, so a statement on a table with triggers (posts:
        # the search index's) keeps the pages it changes in the statement journal, a temp
        # file once the savepoint's share of it has grown: file writes for every row of an
        # executemany. In memory instead (VACUUM, whose copy would be in memory too, sets
        # it back to a file for its own run: ``vacuum``).
        conn.execute(f"PRAGMA temp_store = {TEMP_STORE}")
        return cls(conn)

    async def write(self, work: Work) -> Any:
        """Queue ``work``; its result once its batch committed (or its exception)."""
        return await self._submit(True, work)

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with the connection on the writer's thread, between batches."""
        result: T = await self._submit(False, fn)
        return result

    async def _submit(self, transactional: bool, fn: Callable[..., Any]) -> Any:
        if not self._thread.is_alive():
            raise sqlite3.ProgrammingError("the database writer is closed")
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
            self._conn.close()

    def _take(self) -> list[_Item | object]:
        """The next item (waiting for it), and whatever else queued up meanwhile."""
        items = [self._queue.get()]
        while len(items) < MAX_BATCH and items[-1] is not _STOP:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _run(self, items: list[_Item]) -> None:
        """Consecutive writes as one batch; a call on its own, in its place."""
        settled: list[tuple[asyncio.Future[Outcome], Outcome]] = []
        batch: list[_Item] = []
        for item in [*items, None]:
            if item is not None and item[0]:
                batch.append(item)
                continue
            if batch:
                settled += zip([done for _, _, done in batch], self._commit(batch), strict=True)
                batch = []
            if item is not None:
                _, fn, done = item
                settled.append((done, _outcome_of(fn, self._conn)))
        _settle(settled)

    def _commit(self, batch: list[_Item]) -> list[Outcome]:
        try:
            outcomes = run_batch([fn for _, fn, _ in batch], self._conn)
        except Exception as exc:
            return [Outcome(error=exc)] * len(batch)
        self.commits += 1
        return outcomes


def _outcome_of(fn: Callable[[sqlite3.Connection], Any], conn: sqlite3.Connection) -> Outcome:
    try:
        return Outcome(value=fn(conn))
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
