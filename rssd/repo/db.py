"""The driver interface every repository is written against: ``Database`` and ``Tx``.

Two implementations, opened by rssd/repo/open.py: SQLite (rssd/repo/sqlite.py, reads on
an aiosqlite connection, writes by one writer thread; the embedded default) and PostgreSQL
(rssd/repo/postgres.py, a psycopg pool, shared by several daemons).
Repositories use only these methods, with ``:name`` parameters and rows read by column
name (or position), so each is written once; where the two SQL dialects disagree they ask
``db.dialect`` for the fragment (rssd/repo/dialect.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rssd.clock import utcnow
from rssd.repo.dialect import Dialect

T = TypeVar("T")

Params = Mapping[str, Any]


class Row(Protocol):
    """A result row: by column name or position, and ``dict(row)`` (as ``sqlite3.Row``)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def keys(self) -> list[str]: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class Listening(Protocol):
    """A running notification listener: ``connected`` False means notifications may be
    lost right now (poll); ``last_error`` says why."""

    connected: bool
    last_error: str | None


class DatabaseError(Exception):
    """The database cannot be used (unreadable, newer schema, unreachable server...)."""


def is_postgres(target: Path | str) -> bool:
    """A ``postgresql://`` (or ``postgres://``) URL, as opposed to a SQLite file path."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


class Tx(ABC):
    """Statements inside one transaction (or one read) that ``Database`` hands out."""

    dialect: Dialect

    @abstractmethod
    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement without result rows; return the rows it changed (its own)."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...

    @abstractmethod
    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run a statement that returns rows (SELECT, or RETURNING) to completion."""

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall_after(
        self, first: Sequence[str], sql: str, params: Params | None = None
    ) -> list[Row]:
        """The statements ``first`` in turn, then ``sql``'s rows; all share ``params`` and
        each sees what the ones before it wrote. A backend whose statements cost a round
        trip each sends them as one (PostgreSQL: a claim's host locks with its slot count,
        its update with the reading of what it claimed). Each is one statement, with no
        ``;`` of its own: PostgreSQL's results are counted to find ``sql``'s."""
        for statement in first:
            await self.execute(statement, params)
        return await self.fetchall(sql, params)

    async def now(self) -> datetime:
        """The clock this transaction's times are written by (see ``Database.now``)."""
        return utcnow()


class Database(ABC):
    """One database, whichever backend: short explicit transactions, nothing interleaved."""

    dialect: Dialect
    #: True when several daemons may share the database (PostgreSQL).
    shared: bool = False

    @property
    @abstractmethod
    def label(self) -> str:
        """What to call the database in messages: a path, or a URL without its password."""

    @abstractmethod
    async def write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``work`` as one transaction; roll back if it raises. Shielded: a caller
        cancelled mid-transaction waits for it to end before the cancellation arrives.

        ``work`` awaits only its ``Tx``'s statements: SQLite runs it whole in its
        database thread, batched with the other writes queued meanwhile (group commit,
        rssd/repo/sqlite.py)."""

    def hold_writes(self) -> AbstractContextManager[None]:
        """While inside, the writes submitted wait and then go with the holder's own, in one
        commit (``group_commit.ThreadWriter.held``); nothing where there is no writer."""
        return contextlib.nullcontext()

    async def write_aside(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """``write``, but not queued behind the other writes where a write can wait on a
        lock for long (PostgreSQL: a table locked by hand): a daemon's heartbeat, which must
        get through while its scheduler waits (rssd/repo/daemons.py)."""
        return await self.write(work)

    async def write_one(self, sql: str, params: Params | None = None) -> list[Row]:
        """One write statement as its own transaction; returns the RETURNING rows, if any."""
        return await self.write(lambda tx: tx.fetchall(sql, params))

    @abstractmethod
    async def read(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run read-only statements, never inside another coroutine's write."""

    @abstractmethod
    async def snapshot(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run read-only statements in one read transaction: they all see one state."""

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        return await self.read(lambda tx: tx.fetchall(sql, params))

    async def now(self) -> datetime:
        """The clock every time that other daemons act on is measured by: due times,
        retries, retention cutoffs, failing_since. On SQLite (one machine) the local clock;
        where several machines share the database, the database's own, so one daemon
        whose clock is wrong cannot prune, schedule or disable for the others."""
        return utcnow()

    async def fetchone(self, sql: str, params: Params | None = None) -> Row | None:
        return await self.read(lambda tx: tx.fetchone(sql, params))

    @abstractmethod
    async def schema_version(self) -> int: ...

    async def checkpoint(self) -> None:  # noqa: B027  (a no-op where there is no WAL file)
        """Fold a write-ahead log back into the main file, where the backend has one."""

    async def quick_check(self) -> str:
        """An integrity check after an unclean stop: "ok" or what is wrong."""
        return "ok"

    @abstractmethod
    async def vacuum(self) -> None:
        """Give the space of deleted rows back (outside any transaction)."""

    @abstractmethod
    async def size_bytes(self) -> int:
        """What the database takes on disk (SQLite: the file and its WAL)."""

    @abstractmethod
    async def try_lock(self, name: str) -> bool:
        """Take a named session lock held until ``unlock`` (one daemon at a time for
        cluster-wide chores); False when another holder has it, or this one already
        does. On SQLite (one daemon per database) the holders are this process's own."""

    @abstractmethod
    async def unlock(self, name: str) -> None: ...

    async def listen(self, wake: Callable[[], None]) -> Listening | None:
        """Call ``wake`` whenever a job falls due in another process's transaction, where
        the backend can tell (PostgreSQL's NOTIFY); None where it cannot, and the claim
        loop polls. Stopped by ``close``."""
        return None

    @abstractmethod
    async def close(self) -> None: ...


def is_driver_error(exc: BaseException) -> bool:
    """An error raised by either database driver (sqlite3, psycopg): the database failed,
    not rssd. psycopg is only looked up if it was imported (a SQLite run never loads it)."""
    if isinstance(exc, sqlite3.Error):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.Error)


def is_lock_timeout(exc: BaseException) -> bool:
    """PostgreSQL gave up waiting for a lock (``lock_timeout``, SQLSTATE 55P03)."""
    return is_driver_error(exc) and getattr(exc, "sqlstate", None) == "55P03"


async def shielded(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even if the caller is cancelled, then deliver the cancel."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            await asyncio.wait([task])
        raise


async def write_in_batches(db: Database, work: Callable[[Tx], Awaitable[int]], batch: int) -> int:
    """Run ``work`` (a DELETE of at most ``batch`` rows) in a transaction of its own, again
    and again until it deletes fewer: retention in short transactions, so that the daemon's
    writes never wait long behind one big DELETE. The rows deleted in all."""
    total = 0
    while True:
        deleted = await db.write(work)
        total += deleted
        if deleted < batch:
            return total
