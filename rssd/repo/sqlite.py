"""SQLite backend: the one aiosqlite connection, pragmas, schema and migrations, one write path.

Many coroutines interleaving statements on one aiosqlite connection is a trap (statements
from different transactions mix; a cancelled await still runs its queued statement). So
every statement goes through ``Database``: writes run as one short explicit transaction
under a lock, and a transaction, once begun, runs to its end even if its caller is cancelled.

Writes are group-committed: a writer task takes every write queued meanwhile (up to
MAX_BATCH) and runs them in one BEGIN IMMEDIATE ... COMMIT, each in its own savepoint, in
one hop to aiosqlite's thread (ThreadTx). A fetch's bookkeeping used to cost ~10 hops
(BEGIN, each statement, COMMIT, for the claim and for the completion), and the hops, on
both threads, not SQLite, were most of a warm pass's CPU (bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from rssd.repo.db import Database, DatabaseError, Params, Row, Tx, shielded
from rssd.repo.dialect import SQLITE
from rssd.repo.migrations import MIGRATIONS, SCHEMA_VERSION

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000
#: The most write transactions one commit carries: enough to share the commit among a
#: burst of fetches ending together, few enough that a read waits a few ms at most.
MAX_BATCH = 64


def schema_sql(name: str = "schema.sql") -> str:
    """A schema file from the installed package, else from the source checkout beside it."""
    packaged = resources.files("rssd").joinpath(name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / name).read_text(encoding="utf-8")


class SqliteTx(Tx):
    dialect = SQLITE

    """Statements on the connection while ``Database`` holds its lock.

    Each method is one hop to aiosqlite's thread (the hops, not SQLite, are what a fetch's
    bookkeeping costs): rows are fetched and the statement finished in the same hop.
    """

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


class ThreadTx(Tx):
    """Statements of a write transaction that runs whole in the database's thread.

    The methods are coroutines (the ``Tx`` interface) but never suspend: each calls
    sqlite3 directly, so ``run_in_thread`` drives the whole ``work`` coroutine with one
    ``send`` on that thread. One hop per transaction instead of one per statement: the
    hops (a queue, a thread wake-up, a wake-up of the loop) were most of what a fetch's
    bookkeeping cost, on both threads (bench/README.md, "Profiles").
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
    else (a sleep, another database) could not go on in the database's thread, and is a
    programming error, reported as such."""
    try:
        work.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    work.close()
    raise RuntimeError("a write transaction awaited something other than its statements")


Work = Callable[[Tx], Awaitable[Any]]


@dataclass(frozen=True)
class Outcome:
    """What one ``work`` of a batch came to: its result, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None


def run_batch(works: Sequence[Work], conn: sqlite3.Connection) -> list[Outcome]:
    """Several callers' write transactions as one BEGIN IMMEDIATE ... COMMIT, each in a
    savepoint of its own; run in the database's thread.

    A work that raises is rolled back to its savepoint and gets its exception; the others
    commit. Each work still sees all-or-nothing, and the order of the calls; what is
    shared is the commit (and the hop to the thread). Raises, failing the whole batch,
    only when the transaction itself fails (BEGIN, COMMIT, or SQLite rolling everything
    back, as it does on a full disk).
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


class SqliteDatabase(Database):
    """Owns the connection. Reads and writes are serialized by one lock: short, never mixed."""

    dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path
        #: Write transactions waiting for the writer task, with their callers' futures.
        self._queued: list[tuple[Work, asyncio.Future[Outcome]]] = []
        self._writer: asyncio.Future[None] | None = None
        #: Commits by the writer task so far: fewer than writes when writes share them.
        self.commits = 0

    @property
    def label(self) -> str:
        return str(self.path)

    @classmethod
    async def open_file(cls, path: Path, *, readonly: bool = False) -> SqliteDatabase:
        """Open (creating if needed), set pragmas, and bring the schema up to date."""
        target, uri = (_readonly_uri(path), True) if readonly else (str(path), False)
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
        """Apply migrations then schema.sql, in one IMMEDIATE transaction: all or nothing."""
        conn = self._conn
        await conn.execute("BEGIN IMMEDIATE")
        try:
            version = await self._user_version()
            if version > SCHEMA_VERSION:
                raise DatabaseError(
                    f"database {self.path} has schema version {version}, newer than this "
                    f"rssd understands ({SCHEMA_VERSION}); upgrade rssd"
                )
            if version > 0:
                for step in range(version, SCHEMA_VERSION):
                    for statement in _statements(MIGRATIONS[step]):
                        await conn.execute(statement)
            for statement in _statements(schema_sql()):
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
        """Run ``work`` as one BEGIN IMMEDIATE ... COMMIT; roll back if it raises.

        Shielded: a caller cancelled mid-transaction waits for the transaction to finish
        (commit or rollback) before the cancellation is delivered, so nothing half-written
        stays open on the shared connection.
        """
        return await shielded(self._run_write(work))

    async def _run_write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Queue ``work`` for the writer task; its outcome once the batch committed."""
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queued.append((work, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_queued())
        outcome = await done
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[no-any-return]

    async def _write_queued(self) -> None:
        """The writer task: whatever was queued meanwhile goes in one transaction (group
        commit), up to MAX_BATCH works; runs while there is work, then ends."""
        while self._queued:
            batch = self._queued[:MAX_BATCH]
            del self._queued[:MAX_BATCH]
            works = [work for work, _ in batch]
            try:
                async with self._lock:
                    outcomes = await self._in_thread(partial(run_batch, works))
                self.commits += 1
            except BaseException as exc:
                outcomes = [Outcome(error=exc)] * len(batch)
                if not isinstance(exc, Exception):
                    _settle(batch, outcomes)
                    raise
            _settle(batch, outcomes)

    async def _in_thread(self, call: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``call`` on aiosqlite's own thread, with its sqlite3 connection: the one
        place that reaches past aiosqlite's public API (``_execute``, ``_conn``), for
        whole transactions in one hop (ThreadTx)."""
        conn = self._conn
        result: T = await conn._execute(lambda: call(conn._conn))  # type: ignore[no-untyped-call]
        return result

    async def read(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run read-only statements under the lock so they never land inside a write."""
        async with self._lock:
            return await work(SqliteTx(self._conn))

    async def snapshot(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """One deferred read transaction: a consistent snapshot under WAL."""

        async def run(tx: Tx) -> T:
            await tx.execute("BEGIN")
            try:
                return await work(tx)
            finally:
                await tx.execute("ROLLBACK")

        return await self.read(run)

    async def schema_version(self) -> int:
        row = await self.fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def vacuum(self) -> None:
        """VACUUM cannot run inside a transaction: one statement on its own, then the WAL."""
        async with self._lock:  # on its own: VACUUM cannot run inside a transaction
            await self._conn.execute("VACUUM")
        await self.checkpoint()

    async def size_bytes(self) -> int:
        return await asyncio.to_thread(file_bytes, self.path)

    async def try_lock(self, name: str) -> bool:
        return True  # one daemon per SQLite file (the lock file): nobody to share with

    async def unlock(self, name: str) -> None:
        return None

    async def checkpoint(self) -> None:
        """Fold the WAL back into the main file (at shutdown, so the file stands alone)."""
        async with self._lock:
            await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def quick_check(self) -> str:
        row = await self.fetchone("PRAGMA quick_check")
        return str(row[0]) if row else "no answer"

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()


def _settle(
    batch: Sequence[tuple[Work, asyncio.Future[Outcome]]], outcomes: Sequence[Outcome]
) -> None:
    for (_, done), outcome in zip(batch, outcomes, strict=True):
        if not done.done():
            done.set_result(outcome)


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


def _readonly_uri(path: Path) -> str:
    """A quoted file: URI (a '#', '?' or '%' in the path must not cut or change it)."""
    return path.resolve().as_uri() + "?mode=ro"
