"""The PostgreSQL writer: one connection, one task, committing writes in groups.

Every write transaction of a daemon goes through here, as on SQLite (group_commit.py):
callers queue a ``work`` and await its outcome; the task takes whatever has queued up (up
to MAX_BATCH works) into one BEGIN ... COMMIT, each work in a savepoint of its own (a lone
work needs none), and settles the callers' futures after the commit. One connection and
one commit (one WAL flush) per batch instead of a pooled connection and a commit per
claim and completion: the per-check cost of a busy daemon is its main process's CPU, and
a transaction's fixed cost in psycopg, in the pool and on the server is paid once a batch.

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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection

from rssd.repo.group_commit import Outcome, Work

#: The most works one PostgreSQL commit carries. Each work is a savepoint, and each
#: savepoint that writes is a subtransaction with an id of its own: beyond 64 in one
#: transaction (PGPROC_MAX_CACHED_SUBXIDS) the server's subtransaction cache overflows and
#: every other session's snapshots get slower while it is open.
MAX_BATCH = 64

Connect = Callable[[], Awaitable[AsyncConnection[Any]]]
#: How a work's statements are run on the writer's connection, within the savepoint of
#: the given name, if any, sharing what holds for the whole transaction (PostgresTx).
MakeTx = Callable[[AsyncConnection[Any], str | None, dict[str, Any]], Any]


class PgWriter:
    """The writer task and its connection (see the module docstring)."""

    def __init__(self, connect: Connect, make_tx: MakeTx) -> None:
        self._connect = connect
        self._make_tx = make_tx
        self._conn: AsyncConnection[Any] | None = None
        self._queue: deque[tuple[Work, asyncio.Future[Outcome]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: Commits so far: fewer than writes when writes share them.
        self.commits = 0

    async def write(self, work: Work) -> Any:
        """Queue ``work``; its result once its batch committed (or its exception)."""
        if self._closing:
            raise psycopg.OperationalError("the database writer is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._serve(), name="rssd-pg-writer")
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append((work, done))
        self._wake.set()
        outcome = await done
        if outcome.error is not None:
            raise outcome.error
        return outcome.value

    async def close(self) -> None:
        """Finish what is queued, then stop the task and close the connection."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _serve(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
                outcomes = await self._commit([work for work, _ in batch])
                for (_, done), outcome in zip(batch, outcomes, strict=True):
                    if not done.done():
                        done.set_result(outcome)
            if self._closing:
                return

    async def _connection(self) -> AsyncConnection[Any]:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            await self._drop()
        if self._conn is None:
            self._conn = await self._connect()
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _commit(self, works: list[Work]) -> list[Outcome]:
        for attempt in (1, 2):
            ran = False
            try:
                conn = await self._connection()
                async with conn.transaction():
                    ran = True
                    shared: dict[str, Any] = {}
                    if len(works) == 1:  # the transaction is its savepoint
                        tx = self._make_tx(conn, None, shared)
                        outcomes = [Outcome(value=await works[0](tx))]
                    else:
                        outcomes = [
                            await self._savepoint(conn, work, f"w{n}", shared)
                            for n, work in enumerate(works)
                        ]
            except Exception as exc:
                if not ran:  # the connection or BEGIN failed: drop it, nothing of it ran
                    await self._drop()
                    if attempt == 1:
                        continue
                return [Outcome(error=exc)] * len(works)
            self.commits += 1
            return outcomes
        raise AssertionError("unreachable")  # pragma: no cover

    async def _savepoint(
        self, conn: AsyncConnection[Any], work: Work, name: str, shared: dict[str, Any]
    ) -> Outcome:
        """One work of a batch, bounded by a savepoint of its own name: the savepoint
        goes out with the work's first statement, and is never released (a released
        savepoint still counts until COMMIT, MAX_BATCH; releasing cost a round trip)."""
        tx = self._make_tx(conn, name, shared)
        try:
            value = await work(tx)
        except Exception as exc:
            if conn.broken or conn.closed:
                raise  # the connection went: nothing of the batch stands
            if tx.savepoint_sent:
                await conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            return Outcome(error=exc)
        return Outcome(value=value)
