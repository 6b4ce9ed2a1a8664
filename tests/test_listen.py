"""Idle daemons woken by the database: NOTIFY when a job falls due, the poll as fallback.

PostgreSQL only for the notifications (SQLite has one daemon per file, nobody to wake);
the next-due query on both backends; the idle wait as a table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from rssd.clock import to_iso, utcnow
from rssd.daemon.claimer import IDLE_SECONDS, MIN_WAIT_SECONDS, POLL_SECONDS, idle_wait
from rssd.repo.claims import ClaimRepo
from rssd.repo.db import Database
from rssd.repo.pg_listen import PgListener
from rssd.repo.postgres import PostgresDatabase
from rssd.repo.sources import SourceRepo
from tests.support.config import make_config
from tests.support.postgres import fresh_database

#: Generous: a notification normally arrives in milliseconds.
ARRIVAL_SECONDS = 20.0


@pytest.mark.parametrize(
    ("due_in", "wait"),
    [
        (None, IDLE_SECONDS),  # nothing queued: sleep long, a notification wakes us
        (3600.0, IDLE_SECONDS),  # due in an hour: no longer than the bound
        (2.5, 2.5),  # due soon: wake exactly then
        (0.001, MIN_WAIT_SECONDS),  # due in a moment: not a loop of its own
        (0.0, POLL_SECONDS),  # due now but not claimed: a busy host, poll
        (-30.0, POLL_SECONDS),
    ],
)
def test_idle_wait(due_in: float | None, wait: float) -> None:
    assert idle_wait(due_in) == wait


@pytest.mark.both_backends
async def test_seconds_to_next_due(db: Database, tmp_path: Path) -> None:
    await SourceRepo(db).sync(make_config(tmp_path, ["http://a.example/", "http://b.example/"]))
    ids = [source.id for source in await SourceRepo(db).list()]
    claims = ClaimRepo(db, "d1")
    assert await claims.seconds_to_next_due() is None
    soon = to_iso(utcnow() + timedelta(minutes=10))
    later = to_iso(utcnow() + timedelta(hours=2))
    await claims.queue_missing({ids[0]: later, ids[1]: soon})
    due_in = await claims.seconds_to_next_due()
    assert due_in is not None and 500 < due_in <= 600


async def _wait_for(event: asyncio.Event) -> None:
    async with asyncio.timeout(ARRIVAL_SECONDS):
        await event.wait()


async def _until(woken: asyncio.Event, done: Callable[[], bool]) -> None:
    """Wait for ``done()``, looking again at each wake-up (every change comes with one)."""
    async with asyncio.timeout(ARRIVAL_SECONDS):
        while not done():
            woken.clear()
            if not done():
                await woken.wait()


async def test_a_job_queued_due_now_wakes_a_listener_and_a_later_one_does_not(
    tmp_path: Path,
) -> None:
    async with fresh_database() as url:
        listening = await PostgresDatabase.connect(url)
        other = await PostgresDatabase.connect(url)  # another daemon
        woken = asyncio.Event()
        try:
            listener = await listening.listen(woken.set)
            assert listener.connected
            await SourceRepo(other).sync(
                make_config(tmp_path, ["http://a.example/", "http://b.example/"])
            )
            ids = [source.id for source in await SourceRepo(other).list()]
            claims = ClaimRepo(other, "other")
            await claims.queue_missing({ids[0]: to_iso(utcnow() + timedelta(hours=1))})
            await claims.queue_missing({ids[1]: to_iso(utcnow() - timedelta(seconds=1))})
            await _wait_for(woken)
            # Notifications arrive in commit order: one from the first would be here.
            assert listener.received == 1
        finally:
            await other.close()
            await listening.close()


async def test_a_lost_notification_connection_says_so_and_comes_back(tmp_path: Path) -> None:
    """The poll covers the gap (``connected`` False); back, the listener wakes the loop
    once (what was notified meanwhile is lost) and hears new notifications again."""
    async with fresh_database() as url:
        db = await PostgresDatabase.connect(url)
        woken = asyncio.Event()
        listener = PgListener(db._connect_one, "rssd_jobs", woken.set, reconnect_seconds=0.1)
        try:
            await listener.start()
            assert listener.connected
            conn = listener._conn
            assert conn is not None
            pid = conn.info.backend_pid
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
                await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await _wait_for(woken)  # the loss wakes the loop: poll now
            # Back: a new connection, and the loop woken once more.
            await _until(woken, lambda: listener.connected and listener._conn is not None)
            assert listener._conn is not None and listener._conn.info.backend_pid != pid
            assert listener.last_error is not None
            received = listener.received
            await SourceRepo(db).sync(make_config(tmp_path, ["http://a.example/"]))
            (source,) = await SourceRepo(db).list()
            await ClaimRepo(db, "d").queue_missing({source.id: to_iso(utcnow())})
            await _until(woken, lambda: listener.received > received)
        finally:
            await listener.close()
            await db.close()
