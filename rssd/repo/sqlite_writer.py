"""The SQLite writer: one thread with its own connection, committing writes in groups.

Every write transaction of the process goes through here: callers queue a ``work`` and
await its outcome; the thread takes whatever has queued up (up to MAX_BATCH works) into
one BEGIN IMMEDIATE ... COMMIT, each work in a savepoint of its own (run_batch), and hands
the outcomes back to the event loop in one call. Batch follows batch inside the thread,
without a round trip through the event loop between them: with a thousand fetches in
flight the loop is busy, and a writer that waited for it between commits kept claims and
completions queued for half a second each (bench/README.md, "Profiles").

A work's statements (ThreadTx) are coroutines that never suspend, so one ``send`` runs
the whole work on this thread (the thread and its queue: ``group_commit.ThreadWriter``).
Reads stay on the aiosqlite connection: under WAL they never wait for this one, and see
each commit as soon as it is made.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from rssd.repo.db import Params, Row, Tx
from rssd.repo.dialect import SQLITE
from rssd.repo.group_commit import Outcome, ThreadWriter, Work, run_work

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


def run_batch(works: Sequence[Work], conn: sqlite3.Connection) -> list[Outcome]:
    """Several callers' write transactions as one BEGIN IMMEDIATE ... COMMIT, each in a
    savepoint of its own (a lone work needs none: most batches of a quiet daemon).

    A work that raises is rolled back to its savepoint and gets its exception; the others
    commit. Each work still sees all-or-nothing, and the order of the calls; what is
    shared is the commit. Raises, failing the whole batch, only when the transaction
    itself fails (BEGIN, COMMIT, or SQLite rolling everything back, as on a full disk).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        if len(works) == 1:  # the transaction is its savepoint: two statements fewer
            return [_alone(conn, works[0])]
        outcomes = [_savepoint(conn, work) for work in works]
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return outcomes


def _alone(conn: sqlite3.Connection, work: Work) -> Outcome:
    """A batch of one work: its transaction commits with it or rolls back for it."""
    try:
        value = run_work(work, ThreadTx(conn))
    except Exception as exc:
        if not conn.in_transaction:
            raise  # SQLite ended the transaction itself (a full disk): the batch failed
        conn.execute("ROLLBACK")
        return Outcome(error=exc)
    conn.execute("COMMIT")
    return Outcome(value=value)


def _savepoint(conn: sqlite3.Connection, work: Work) -> Outcome:
    conn.execute("SAVEPOINT work")
    try:
        value = run_work(work, ThreadTx(conn))
    except Exception as exc:
        if not conn.in_transaction:
            raise  # SQLite ended the transaction: nothing of the batch stands
        conn.execute("ROLLBACK TO work")
        conn.execute("RELEASE work")
        return Outcome(error=exc)
    conn.execute("RELEASE work")
    return Outcome(value=value)


def vacuum_on_disk(conn: sqlite3.Connection) -> None:
    """VACUUM with its copy of the database in a temporary file, not in memory (the
    writer's ``temp_store``), then the writer's setting again."""
    conn.execute("PRAGMA temp_store = FILE")
    try:
        conn.execute("VACUUM")
    finally:
        conn.execute(f"PRAGMA temp_store = {TEMP_STORE}")


class Writer(ThreadWriter):
    """The writer thread and its connection (see the module docstring)."""

    max_batch = MAX_BATCH
    closed_error = sqlite3.ProgrammingError

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        super().__init__("rssd-sqlite-writer")

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

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with the connection on the writer's thread, between batches."""
        result: T = await self._submit(False, fn)
        return result

    def commit(self, works: list[Work]) -> list[Outcome]:
        return run_batch(works, self._conn)

    def call_now(self, fn: Callable[..., Any]) -> Any:
        return fn(self._conn)

    def close_connection(self) -> None:
        self._conn.close()
