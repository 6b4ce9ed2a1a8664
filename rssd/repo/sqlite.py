"""SQLite backend: pragmas, schema and migrations, reads on one aiosqlite connection,
writes through the writer (rssd/repo/sqlite_writer.py).

Many coroutines interleaving statements on one aiosqlite connection is a trap (statements
from different transactions mix; a cancelled await still runs its queued statement). So
every statement goes through ``Database``: write transactions go to the writer's thread
and connection (rssd/repo/sqlite_writer.py), which commits them in groups and runs each
to its end even if its caller is cancelled; reads run as single statements on the
aiosqlite connection, and only a snapshot (an explicit read transaction) takes a lock.
Under WAL the reads never wait for the writer and see each of its commits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

import aiosqlite

from rssd.repo.db import Database, DatabaseError, Params, Row, Tx, shielded
from rssd.repo.dialect import SQLITE
from rssd.repo.migrations import SCHEMA_VERSION, upgrade_scripts
from rssd.repo.sqlite_writer import Writer, vacuum_on_disk

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000


class SqliteTx(Tx):
    """Read statements on the aiosqlite connection.

    Each method is one hop to aiosqlite's thread: rows are fetched and the statement
    finished in the same hop.
    """

    dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement without result rows; return the rows it changed (its own)."""
        cursor = await self._conn.execute(sql, params or {})
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run a statement that returns rows (SELECT, or RETURNING) to completion."""
        rows = await self._conn.execute_fetchall(sql, params or {})
        return list(rows)


class SqliteDatabase(Database):
    """Owns both connections: reads on aiosqlite's, writes by the writer on its own."""

    dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path
        #: Every write transaction goes through it (rssd/repo/sqlite_writer.py); opened
        #: once the schema is up to date, never for a read-only open.
        self._writer: Writer | None = None
        #: The names ``try_lock`` holds.
        self._held: set[str] = set()

    @property
    def commits(self) -> int:
        """Commits by the writer so far: fewer than writes when writes share them."""
        return self._writer.commits if self._writer is not None else 0

    @property
    def label(self) -> str:
        return str(self.path)

    @classmethod
    async def open_file(cls, path: Path, *, readonly: bool = False) -> SqliteDatabase:
        """Open (creating if needed), set pragmas, and bring the schema up to date."""
        target, uri = (readonly_uri(path), True) if readonly else (str(path), False)
        try:
            if not readonly:
                path.parent.mkdir(parents=True, exist_ok=True)
            # Try the file with plain sqlite3 first: when aiosqlite's own connect fails,
            # its worker thread outlives the call (aiosqlite#241) and later calls into a
            # closed loop, printing a thread traceback after our clear message.
            await asyncio.to_thread(_probe, target, uri)
            conn = await aiosqlite.connect(target, uri=uri, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise DatabaseError(f"cannot open database {path}: {exc}") from exc
        conn.row_factory = sqlite3.Row
        db = cls(conn, path)
        try:
            await db._configure(readonly=readonly)
            if not readonly:  # the read-only commands never start a writer
                db._writer = await asyncio.to_thread(
                    Writer.connect, target, uri=uri, busy_timeout_ms=BUSY_TIMEOUT_MS
                )
        except sqlite3.DatabaseError as exc:
            await conn.close()
            raise DatabaseError(f"cannot use database {path}: {exc}") from exc
        except DatabaseError:
            await conn.close()
            raise
        return db

    async def _configure(self, *, readonly: bool) -> None:
        conn = self._conn
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA foreign_keys = ON")
        if readonly:
            return
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await self._migrate()

    async def _migrate(self) -> None:
        """Apply migrations then schema.sql, in one IMMEDIATE transaction: all or nothing.
        A database at the current version is left alone, without taking the write lock: a
        command opening it does not queue behind the daemon's writes for nothing."""
        conn = self._conn
        if await self._user_version() == SCHEMA_VERSION:
            return
        await conn.execute("BEGIN IMMEDIATE")
        try:
            version = await self._user_version()
            for script in upgrade_scripts(SQLITE, version, str(self.path)):
                for statement in _statements(script):
                    await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise

    async def _user_version(self) -> int:
        async with self._conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``work`` as one transaction (a savepoint of the writer's next commit); roll
        back if it raises.

        Shielded: a caller cancelled mid-transaction waits for the transaction to finish
        (commit or rollback) before the cancellation is delivered.
        """
        return await shielded(self._run_write(work))

    def hold_writes(self) -> AbstractContextManager[None]:
        return self._writer.held() if self._writer is not None else contextlib.nullcontext()

    async def _run_write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        if self._writer is None:  # opened read-only: as SQLite itself would say
            raise sqlite3.OperationalError("attempt to write a readonly database")
        result: T = await self._writer.write(work)
        return result

    async def read(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run read-only statements, each on its own (autocommit) on the read connection.

        No lock: writes are on the writer's connection, so a read can never land inside
        a write; one that lands inside a snapshot's transaction only reads its view. A
        lock here serialized the reads of a busy daemon at a loop iteration or more each."""
        return await work(SqliteTx(self._conn))

    async def snapshot(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """One deferred read transaction: a consistent snapshot under WAL. Snapshots take
        the lock: two BEGINs on one connection cannot overlap."""

        async def run(tx: Tx) -> T:
            await tx.execute("BEGIN")
            try:
                return await work(tx)
            finally:
                await tx.execute("ROLLBACK")

        async with self._lock:
            return await run(SqliteTx(self._conn))

    async def schema_version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def vacuum(self) -> None:
        """VACUUM cannot run inside a transaction: one statement on its own, then the WAL."""
        if self._writer is None:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        # On the writer's thread, between batches: VACUUM cannot run inside a transaction.
        await self._writer.call(vacuum_on_disk)
        await self.checkpoint()

    async def size_bytes(self) -> int:
        return await asyncio.to_thread(file_bytes, self.path)

    async def try_lock(self, name: str) -> bool:
        """One daemon per SQLite file (the lock file), so only this process can hold a
        name: held in memory, with PostgreSQL's rule that a held name is not taken twice."""
        if name in self._held:
            return False
        self._held.add(name)
        return True

    async def unlock(self, name: str) -> None:
        self._held.discard(name)

    async def checkpoint(self) -> None:
        """Fold the WAL back into the main file (at shutdown, so the file stands alone)."""
        async with self._lock:
            await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def quick_check(self) -> str:
        row = await self.fetchone("PRAGMA quick_check")
        return str(row[0]) if row else "no answer"

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
        async with self._lock:
            await self._conn.close()


def file_bytes(path: Path) -> int:
    """The database file plus its WAL: what the disk actually holds."""
    total = 0
    for name in (path, path.with_name(path.name + "-wal")):
        with contextlib.suppress(OSError):
            total += name.stat().st_size
    return total


def _statements(script: str) -> list[str]:
    """Split a SQL script into complete statements (so they can share one transaction)."""
    out: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                out.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        out.append(buffer.strip())
    return out


def _probe(target: str, uri: bool) -> None:
    sqlite3.connect(target, uri=uri).close()


def readonly_uri(path: Path) -> str:
    """A quoted file: URI (a '#', '?' or '%' in the path must not cut or change it)."""
    return path.resolve().as_uri() + "?mode=ro"
