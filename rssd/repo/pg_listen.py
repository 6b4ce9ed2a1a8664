"""Notifications from PostgreSQL: idle daemons wake when a job falls due, not by polling.

A trigger on fetch_job (schema_pg.sql) notifies the channel ``rssd_jobs`` in the
transaction that queues a job due now: a new source, a job taken back from a dead daemon,
a fetch interrupted. A listener holds one connection of its own in LISTEN and calls
``wake`` for each notification; an idle claim loop then sleeps until the next job falls
due instead of looking every second (rssd/daemon/claimer.py).

Notifications are a hint, never the only way work is found: while the connection is down
``connected`` is False and the claim loop polls as before; the listener reconnects on its
own and wakes the loop once it is back, since a notification sent meanwhile is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection

#: The channel the fetch_job trigger notifies.
JOBS_CHANNEL = "rssd_jobs"
#: How long a lost notification connection waits before it connects again.
RECONNECT_SECONDS = 5.0


class PgListener:
    """LISTEN on one channel over a connection of its own, calling ``wake`` per NOTIFY."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[AsyncConnection[Any]]],
        channel: str,
        wake: Callable[[], None],
        *,
        reconnect_seconds: float = RECONNECT_SECONDS,
    ) -> None:
        self._connect = connect
        self._reconnect_seconds = reconnect_seconds
        self._channel = channel
        self._wake = wake
        self._conn: AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        #: True while notifications can arrive; False means: poll.
        self.connected = False
        #: Notifications received.
        self.received = 0
        #: Why the connection was last lost or refused (the claim loop logs it).
        self.last_error: str | None = None

    async def start(self) -> None:
        """Connect and LISTEN (so that no notification after this returns is missed),
        then keep listening in the background, reconnecting when the connection drops."""
        with contextlib.suppress(psycopg.Error, OSError):
            await self._listen()
        self._task = asyncio.create_task(self._serve(), name=f"rssd-listen-{self._channel}")

    async def _listen(self) -> None:
        conn = await self._connect()
        try:
            await conn.execute(f"LISTEN {self._channel}")
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        self.connected = True

    async def _serve(self) -> None:
        while True:
            if self._conn is None:
                try:
                    await self._listen()
                except (psycopg.Error, OSError) as exc:
                    self.last_error = repr(exc)
                    await asyncio.sleep(self._reconnect_seconds)
                    continue
                self._wake()  # whatever was notified while we were away
            try:
                async for _ in self._conn_or_raise().notifies():
                    self.received += 1
                    self._wake()
            except (psycopg.Error, OSError) as exc:
                self.last_error = repr(exc)
            self.connected = False
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await conn.close()
            self._wake()  # poll at once, then at the fallback pace until reconnected

    def _conn_or_raise(self) -> AsyncConnection[Any]:
        if self._conn is None:
            raise psycopg.OperationalError("not connected")
        return self._conn

    async def close(self) -> None:
        self.connected = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await self._conn.close()
            self._conn = None
