"""The PostgreSQL writer: one thread, one connection, committing writes in groups.

Every write transaction of a daemon goes through here, as on SQLite: callers queue a
``work`` and await its outcome; the writer's thread (``group_commit.ThreadWriter``) takes
whatever has queued up (up to MAX_BATCH works) into one BEGIN ... COMMIT, each work in a
savepoint of its own (a lone work needs none), and hands the outcomes back to the event
loop after the commit. One connection and one commit (one WAL flush) per batch instead of
a pooled connection and a commit per claim and completion; and, in a thread, a round trip
per statement at the network's pace, not at the busy event loop's.

Locks last until the batch commits. A daemon claims one batch of jobs at a time, and a
claim takes its host locks in one order, so two daemons' batches never wait on each
other in a circle; the other works of a batch touch only the daemon's own rows.

A work that raises rolls back to its savepoint. One whose first statement PostgreSQL
cannot even parse never set its savepoint (the whole query string is refused), so the
transaction cannot be saved and the whole batch fails with that error: a programming
error, which the tests catch. A batch whose connection or BEGIN fails (the server
restarted, the connection was terminated) is tried once more on a new connection:
nothing of it ran. A batch that fails later, or at COMMIT, fails every work in it, as one
transaction's failure would.

Statements go through ``run_query``: libpq's own blocking call, its parameters bound
beforehand by psycopg's client-side cursor, its rows read by psycopg's loaders and its
errors raised as psycopg's classes (the pool's connections, on the event loop, keep
psycopg's async cursors).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg import Connection, pq
from psycopg.adapt import Transformer

from rssd.clock import parse_iso
from rssd.repo.group_commit import Outcome, ThreadWriter, Work, run_work

#: The most works one PostgreSQL commit carries. Each work is a savepoint, and each
#: savepoint that writes is a subtransaction with an id of its own: beyond 64 in one
#: transaction (PGPROC_MAX_CACHED_SUBXIDS) the server's subtransaction cache overflows and
#: every other session's snapshots get slower while it is open.
MAX_BATCH = 64

Connect = Callable[[], Connection[Any]]
#: How a work's statements are run on the writer's connection, within the savepoint of
#: the given name, if any, sharing what holds for the whole transaction (PostgresTx).
MakeTx = Callable[[Connection[Any], str | None, dict[str, Any]], Any]


class PgWriter(ThreadWriter):
    """The writer thread and its connection (see the module docstring)."""

    max_batch = MAX_BATCH
    closed_error = psycopg.OperationalError

    def __init__(self, connect: Connect, make_tx: MakeTx) -> None:
        self._connect = connect
        self._make_tx = make_tx
        self._conn: Connection[Any] | None = None
        super().__init__("rssd-pg-writer")

    def _connection(self) -> Connection[Any]:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self.close_connection()
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def call_now(self, fn: Callable[..., Any]) -> Any:
        return fn(self._connection())

    def commit(self, works: list[Work]) -> list[Outcome]:
        for attempt in (1, 2):
            ran = False
            try:
                conn = self._connection()
                shared: dict[str, Any] = {"now": _begin(conn)}
                ran = True
                try:
                    outcomes = self._in_transaction(conn, works, shared)
                except BaseException:
                    if not (conn.broken or conn.closed):
                        with contextlib.suppress(psycopg.Error):  # the first error says why
                            run_query(conn, "ROLLBACK")
                    raise
                if run_query(conn, "COMMIT").command_status != b"COMMIT":
                    # PostgreSQL ends an aborted transaction at COMMIT with a ROLLBACK and no
                    # error: a work that swallowed a failed statement must not pass for done.
                    raise psycopg.errors.InFailedSqlTransaction(
                        "the batch's transaction was aborted; COMMIT rolled it back"
                    )
                return outcomes
            except Exception:
                if not ran and attempt == 1:  # the connection or BEGIN failed: nothing ran
                    self.close_connection()
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _in_transaction(
        self, conn: Connection[Any], works: list[Work], shared: dict[str, Any]
    ) -> list[Outcome]:
        if len(works) == 1:  # the transaction is its savepoint
            tx = self._make_tx(conn, None, shared)
            return [Outcome(value=run_work(works[0], tx))]
        return [self._savepoint(conn, work, f"w{n}", shared) for n, work in enumerate(works)]

    def _savepoint(
        self, conn: Connection[Any], work: Work, name: str, shared: dict[str, Any]
    ) -> Outcome:
        """One work of a batch, bounded by a savepoint of its own name: the savepoint
        goes out with the work's first statement, and is never released (a released
        savepoint still counts until COMMIT, MAX_BATCH; releasing cost a round trip)."""
        tx = self._make_tx(conn, name, shared)
        try:
            value = run_work(work, tx)
        except Exception as exc:
            if conn.broken or conn.closed:
                raise  # the connection went: nothing of the batch stands
            if tx.savepoint_sent:
                run_query(conn, f"ROLLBACK TO SAVEPOINT {name}")
            return Outcome(error=exc)
        return Outcome(value=value)


_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK, pq.ExecStatus.EMPTY_QUERY)


def run_query(conn: Connection[Any], query: str) -> pq.abc.PGresult:
    """``query`` (its parameters bound already: one simple query, one or more statements)
    on the writer's connection, through libpq's blocking ``PQexec``: the last statement's
    result, or the first failing one's error, raised as psycopg raises it.

    Blocking is what the writer's thread is for (libpq releases the GIL while it waits).
    psycopg's cursor layer around the same round trip (a cursor a statement, a wait driven
    by a generator, made for async callers, the prepared-statement bookkeeping that a
    client-side cursor never uses) cost ~28 us of CPU a statement more (143 against 115
    us), the writer sends ~1,200 statements in a pass of 2,000 feeds, and that pass took
    0.94x the CPU without it (bench/README.md, "Seventeenth round")."""
    result = conn.pgconn.exec_(query.encode(conn.info.encoding))
    if result.status not in _OK:
        if result.status == pq.ExecStatus.FATAL_ERROR:
            raise psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
        raise psycopg.ProgrammingError(f"unexpected result: {pq.ExecStatus(result.status).name}")
    return result


def _begin(conn: Connection[Any]) -> datetime:
    """BEGIN, and the transaction's clock (``now()``, which the works' ``tx.now()`` give),
    in one round trip: asked by the first work of each batch, ``SELECT now()`` was a
    quarter of the writer's statements in a pass of ``run --once`` (bench/README.md)."""
    result = run_query(conn, "BEGIN; SELECT now()")
    loader = Transformer(conn)
    loader.set_pgresult(result)
    return parse_iso(loader.load_row(0, tuple)[0])  # ISO text: conn has postgres.ADAPTERS
