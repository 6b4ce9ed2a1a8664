"""PostgreSQL backend: the writer's thread and connection for every write transaction
(rssd/repo/pg_writer.py), a psycopg 3 async pool for the reads.

Several daemons, on several machines, share one database; PostgreSQL's row locks and
transactions do what the single owner does on SQLite. Parameters are bound client-side
(``AsyncClientCursor``, ``ClientCursor``) so that SQL written for SQLite's loose typing
(``:x IS NULL OR col = :x``, ISO 8601 text for timestamptz columns) needs no casts. Rows
come back as ``PgRow``: by name or position like ``sqlite3.Row``, timestamps as the same
ISO 8601 UTC text SQLite stores (``ADAPTERS``, given to every connection rssd makes).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncClientCursor, AsyncConnection, ClientCursor, Connection, pq
from psycopg.abc import Buffer
from psycopg.adapt import AdaptersMap, Loader, Transformer
from psycopg.rows import RowMaker
from psycopg_pool import AsyncConnectionPool

from rssd.clock import parse_iso, to_iso
from rssd.models.redact import redact
from rssd.repo.db import Database, DatabaseError, Params, Row, Tx, shielded
from rssd.repo.dialect import POSTGRES
from rssd.repo.migrations import SCHEMA_VERSION, upgrade_scripts
from rssd.repo.pg_listen import JOBS_CHANNEL, PgListener
from rssd.repo.pg_writer import PgWriter, run_query

T = TypeVar("T")

POOL_MAX = 10
CONNECT_TIMEOUT_SECONDS = 10
#: pg_advisory_xact_lock key serializing schema set-up when daemons start together.
_SCHEMA_LOCK = "rssd.schema"

_PARAM = re.compile(r"'(?:[^']|'')*'|::|%|:([A-Za-z_][A-Za-z0-9_]*)")


@lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """``:name`` -> ``%(name)s``; ``::`` casts kept; string literals kept (no parameter in
    them) and every ``%`` doubled, in literals too (psycopg reads them all)."""

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        if match.group(1):
            return f"%({match.group(1)})s"
        return token.replace("%", "%%")

    return _PARAM.sub(swap, sql)


class _IsoTime(Loader):
    """A ``timestamptz`` as the ISO 8601 UTC text SQLite stores (``clock.to_iso``: "T",
    milliseconds, "Z"), straight from the server's text. From PostgreSQL's own UTC
    output ("2026-12-05 10:46:24.027472+00") that is slicing; building a datetime and
    formatting it again cost 1.5 us more a value, and a pass of ``run --once`` reads
    tens of thousands (bench/README.md). A server whose TimeZone is not UTC, or a value
    of another shape, takes the long way, which gives the same text."""

    def load(self, data: Buffer) -> str:
        text = bytes(data).decode()
        if len(text) >= 22 and text.endswith("+00") and text[10] == " ":
            if text[19] == ".":  # PostgreSQL drops the fraction's trailing zeros
                return f"{text[:10]}T{text[11:19]}.{(text[20:-3] + '000')[:3]}Z"
            if len(text) == 22:
                return f"{text[:10]}T{text[11:19]}.000Z"
        return to_iso(datetime.fromisoformat(text))


class _IsoLocalTime(_IsoTime):
    """A ``timestamp`` (no zone) as ISO 8601 UTC text, taken as UTC as ``to_iso`` takes a
    naive datetime."""

    def load(self, data: Buffer) -> str:
        return super().load(bytes(data) + b"+00")


#: The adapters of every connection rssd makes: its times as ISO text (above).
ADAPTERS = AdaptersMap(psycopg.adapters)
ADAPTERS.register_loader("timestamptz", _IsoTime)
ADAPTERS.register_loader("timestamp", _IsoLocalTime)


class Columns:
    """A result's column names and their positions: built once per result from the libpq
    result itself (psycopg's ``description`` builds a Column object per column on every
    call), shared by all its rows."""

    __slots__ = ("names", "positions")

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.positions = {name: n for n, name in enumerate(names)}


class PgRow:
    """A row by column name or position; ``dict(row)`` works as with ``sqlite3.Row``."""

    __slots__ = ("_columns", "_values")

    def __init__(self, columns: Columns, values: Sequence[Any]) -> None:
        self._columns = columns
        self._values = values

    def __getitem__(self, key: int | str, /) -> Any:
        if isinstance(key, int):
            return self._values[key]
        try:
            return self._values[self._columns.positions[key]]
        except KeyError:
            raise IndexError(f"no such column: {key}") from None

    def keys(self) -> list[str]:
        return self._columns.names

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._columns.names, self._values, strict=True))!r})"


def _columns(cursor: Any) -> Columns:
    result = cursor.pgresult
    return _columns_of(result) if result is not None else Columns([])


def _columns_of(result: pq.abc.PGresult) -> Columns:
    return Columns([(result.fname(n) or b"").decode() for n in range(result.nfields)])


def _pg_row(cursor: Any) -> RowMaker[PgRow]:
    columns = _columns(cursor)

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(columns, values)

    return make


def _has_rows(cursor: Any) -> bool:
    """Did the statement return a result with columns (a SELECT, a RETURNING)? Read off
    the libpq result, not ``description``, for the same reason as ``Columns``."""
    result = cursor.pgresult
    return result is not None and result.nfields > 0


class _Statements(Tx):
    """What both kinds of statement runner share. With ``savepoint``, the transaction is
    one work of the writer's batch: the savepoint that bounds it goes out with its first
    statement (one round trip, not two: parameters are bound client-side, so one simple
    query can carry both), and ``savepoint_sent`` says whether there is one to roll back
    to."""

    dialect = POSTGRES

    def __init__(self, savepoint: str | None, transaction: dict[str, Any] | None) -> None:
        self._savepoint = savepoint
        self.savepoint_sent = False
        #: What holds for the whole transaction, shared by the works of one batch: its
        #: start time (``now()`` is fixed within a transaction: asked once, not per work).
        self._transaction = {} if transaction is None else transaction

    def _script(
        self, statements: Sequence[str], params: Params | None
    ) -> tuple[str, Params | None, int]:
        """``statements`` as one query string (one round trip: parameters are bound
        client-side, so a simple query carries them all), after the savepoint if it is
        not sent yet; and how many results come before the last one's."""
        pieces = [translate(sql) for sql in statements] if params else list(statements)
        if self._savepoint is not None and not self.savepoint_sent:
            self.savepoint_sent = True
            pieces.insert(0, f"SAVEPOINT {self._savepoint}")
        return "; ".join(pieces), params or None, len(pieces) - 1

    async def now(self) -> datetime:
        """The database's clock at the start of this transaction."""
        started = self._transaction.get("now")
        if started is None:
            started = self._transaction["now"] = await _database_now(self, "now()")
        return started


class PostgresTx(_Statements):
    """Statements on one of the pool's connections (reads, and writes set aside)."""

    def __init__(
        self,
        conn: AsyncConnection[Any],
        savepoint: str | None = None,
        transaction: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(savepoint, transaction)
        self._conn = conn

    async def execute(self, sql: str, params: Params | None = None) -> int:
        query, bound, skip = self._script((sql,), params)
        async with self._conn.cursor() as cursor:
            await cursor.execute(query, bound)
            for _ in range(skip):
                cursor.nextset()
            return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        if self._savepoint is not None and not self.savepoint_sent:
            await self.execute("SELECT 1")  # the savepoint first: executemany repeats its SQL
        async with self._conn.cursor() as cursor:
            await cursor.executemany(translate(sql), list(rows))

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        return await self.fetchall_after((), sql, params)

    async def fetchall_after(
        self, first: Sequence[str], sql: str, params: Params | None = None
    ) -> list[Row]:
        query, bound, skip = self._script((*first, sql), params)
        async with self._conn.cursor(row_factory=_pg_row) as cursor:
            await cursor.execute(query, bound)
            for _ in range(skip):
                cursor.nextset()
            if not _has_rows(cursor):
                return []
            return list(await cursor.fetchall())


class ThreadTx(_Statements):
    """Statements on the writer's connection, in the writer's thread: coroutines (the
    ``Tx`` interface) that never suspend, each one blocking call of libpq
    (``pg_writer.run_query``; rssd/repo/group_commit.py, ``run_to_end``)."""

    def __init__(
        self,
        conn: Connection[Any],
        savepoint: str | None = None,
        transaction: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(savepoint, transaction)
        self._conn = conn
        self._binder: ClientCursor[Any] | None = None

    def _run(self, statements: Sequence[str], params: Params | None) -> pq.abc.PGresult:
        """The last statement's result; parameters bound as a client-side cursor binds
        them (``mogrify``), so ``PQexec`` gets one query, and the earlier statements'
        results are libpq's to discard."""
        query, bound, _ = self._script(statements, params)
        if bound is not None:
            if self._binder is None:
                self._binder = ClientCursor(self._conn)
            query = self._binder.mogrify(query, bound)
        return run_query(self._conn, query)

    async def execute(self, sql: str, params: Params | None = None) -> int:
        count = self._run((sql,), params).command_tuples
        return -1 if count is None else count

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        if self._savepoint is not None and not self.savepoint_sent:
            await self.execute("SELECT 1")  # the savepoint first: executemany repeats its SQL
        with self._conn.cursor() as cursor:
            cursor.executemany(translate(sql), list(rows))

    async def fetchall(self, sql: str, params: Params | None = None) -> list[Row]:
        return await self.fetchall_after((), sql, params)

    async def fetchall_after(
        self, first: Sequence[str], sql: str, params: Params | None = None
    ) -> list[Row]:
        result = self._run((*first, sql), params)
        if result.nfields == 0:
            return []
        columns = _columns_of(result)
        loader = Transformer(self._conn)
        loader.set_pgresult(result)
        return loader.load_rows(0, result.ntuples, lambda values: PgRow(columns, values))


class PostgresDatabase(Database):
    """A pool of connections; each transaction takes one for itself."""

    dialect = POSTGRES
    shared = True

    def __init__(
        self, pool: AsyncConnectionPool[Any], url: str, kwargs: dict[str, Any] | None = None
    ) -> None:
        self._pool = pool
        self.url = url
        self._kwargs = kwargs or {}
        #: Session-level advisory locks (``try_lock``), all on one connection of their own.
        self._held: set[str] = set()
        self._lock_conn: AsyncConnection[Any] | None = None
        self._lock_guard = asyncio.Lock()
        #: Every write transaction goes through it (rssd/repo/pg_writer.py): group commit
        #: on one connection of its own, as on SQLite.
        self._writer = PgWriter(self._connect_writer, ThreadTx)
        self._listeners: list[PgListener] = []

    async def _connect_one(self) -> AsyncConnection[Any]:
        return await AsyncConnection.connect(self.url, **self._kwargs)

    def _connect_writer(self) -> Connection[Any]:
        """The writer's connection, blocking (its thread's): as the pool's, synchronous."""
        kwargs = {**self._kwargs, "cursor_factory": ClientCursor}
        return Connection.connect(self.url, **kwargs)

    @property
    def commits(self) -> int:
        """Write transactions committed so far: fewer than writes when writes share them."""
        return self._writer.commits

    @property
    def label(self) -> str:
        return redact(self.url, keep_user=True)

    @classmethod
    async def connect(
        cls, url: str, *, readonly: bool = False, lock_wait: float | None = None
    ) -> PostgresDatabase:
        """Connect (the password from the URL, ~/.pgpass or PGPASSFILE, as libpq does) and,
        unless ``readonly``, bring the schema up to date. ``lock_wait``: a statement waits
        at most that many seconds for a lock, then fails (``is_lock_timeout``)."""
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "cursor_factory": AsyncClientCursor,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "context": ADAPTERS,
        }
        options = ["-c default_transaction_read_only=on"] if readonly else []
        if lock_wait is not None:
            options.append(f"-c lock_timeout={round(lock_wait * 1000)}")
        if options:
            kwargs["options"] = " ".join(options)
        try:  # one plain connection first: its error says what is wrong, a pool's would not
            probe = await AsyncConnection.connect(url, **kwargs)
            await probe.close()
        except psycopg.Error as exc:
            shown, why = redact(url, keep_user=True), str(exc).strip()
            raise DatabaseError(
                f"cannot connect to database {shown}: {redact(why, keep_user=True, secrets_of=url)}"
            ) from None
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url, min_size=1, max_size=POOL_MAX, kwargs=kwargs, open=False, name="rssd"
        )
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT_SECONDS)
        db = cls(pool, url, kwargs)
        try:
            if not readonly:
                await db._migrate()
        except BaseException:
            await db.close()
            raise
        return db

    async def _migrate(self) -> None:
        """Migrations then schema_pg.sql in one transaction, one daemon at a time; only
        when the database's version is behind. A database at the current version is left
        alone: re-running the schema file takes table locks (its indexes, its trigger), so
        every ``rssd redeliver`` would wait behind any long lock on any table."""
        if await self.read(_version) == SCHEMA_VERSION:
            return

        async def work(tx: Tx) -> None:
            await tx.execute(POSTGRES.xact_lock, {"lock_key": _SCHEMA_LOCK})
            version = await _version(tx)
            if version == SCHEMA_VERSION:
                return  # another daemon brought it up to date while this one waited
            for script in upgrade_scripts(POSTGRES, version, self.label):
                await tx.execute(script)
            await tx.execute("DELETE FROM schema_version")
            await tx.execute(
                "INSERT INTO schema_version (version) VALUES (:v)", {"v": SCHEMA_VERSION}
            )

        await self.write(work)

    async def write(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Run ``work`` as one transaction (a savepoint of the writer's next commit)."""
        result: T = await shielded(self._writer.write(work))
        return result

    def hold_writes(self) -> AbstractContextManager[None]:
        return self._writer.held()

    async def _run(self, work: Callable[[Tx], Awaitable[T]], *, snapshot: bool = False) -> T:
        async with self._pool.connection() as conn, conn.transaction():
            if snapshot:
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return await work(PostgresTx(conn))

    async def write_aside(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """A pooled connection of its own: the writer's batch may be waiting on a lock."""
        result: T = await shielded(self._run(work))
        return result

    async def read(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """Each statement on its own (the pool's connections are in autocommit), as on
        SQLite: a read in a transaction block cost BEGIN and COMMIT, two more round trips
        than its statement, each a turn of the event loop and psycopg's CPU (a changed
        feed's item fingerprints, read before its parse: ~1 ms of the main thread each,
        bench/README.md, "Tenth round"). ``snapshot`` is for statements that must see one
        state."""
        async with self._pool.connection() as conn:
            return await work(PostgresTx(conn))

    async def snapshot(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        return await self._run(work, snapshot=True)

    async def schema_version(self) -> int:
        return await self.read(_version)

    async def now(self) -> datetime:
        return await self.read(lambda tx: _database_now(tx, "clock_timestamp()"))

    async def vacuum(self) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("VACUUM (ANALYZE)")

    async def size_bytes(self) -> int:
        row = await self.fetchone("SELECT pg_database_size(current_database())")
        return int(row[0]) if row else 0

    async def try_lock(self, name: str) -> bool:
        """A session advisory lock, held on one connection of its own (not the pool's):
        any number of names, released by ``unlock``, by ``close``, or by the server when
        this process dies (its connection goes)."""
        async with self._lock_guard:
            if name in self._held:
                return False
            if self._lock_conn is None or self._lock_conn.closed:
                self._lock_conn = await AsyncConnection.connect(self.url, **self._kwargs)
                self._held.clear()
            cursor = await self._lock_conn.execute(
                "SELECT pg_try_advisory_lock(hashtext(%s))", (name,)
            )
            row = await cursor.fetchone()
            if row is None or not row[0]:
                return False
            self._held.add(name)
            return True

    async def unlock(self, name: str) -> None:
        async with self._lock_guard:
            if name not in self._held or self._lock_conn is None:
                return
            self._held.discard(name)
            await self._lock_conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))

    async def listen(self, wake: Callable[[], None]) -> PgListener:
        listener = PgListener(self._connect_one, JOBS_CHANNEL, wake)
        await listener.start()
        self._listeners.append(listener)
        return listener

    async def close(self) -> None:
        for listener in self._listeners:
            await listener.close()
        async with self._lock_guard:
            if self._lock_conn is not None:
                await self._lock_conn.close()  # releases every lock it held
            self._held.clear()
        await self._writer.close()
        await self._pool.close()


async def _database_now(tx: Tx, clock: str) -> datetime:
    row = await tx.fetchone(f"SELECT {clock} AS now")
    assert row is not None
    return parse_iso(str(row["now"]))


async def _version(tx: Tx) -> int:
    row = await tx.fetchone("SELECT to_regclass('schema_version') IS NOT NULL AS present")
    if row is None or not row["present"]:
        return 0
    row = await tx.fetchone("SELECT max(version) AS version FROM schema_version")
    return int(row["version"]) if row is not None and row["version"] is not None else 0
