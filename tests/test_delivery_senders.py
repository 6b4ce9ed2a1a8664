"""Two daemons' delivery loops on one PostgreSQL database, and every connection of theirs
killed (``pg_terminate_backend``) while one of them is sending: no message may have two
senders at once (the issue saw each message of a slow receiver's user received three
times, ten minutes later still, after the lock connection was terminated)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from aiohttp import web

from rssd.daemon.delivery import DeliveryLoop
from rssd.daemon.startup import sync_sources
from rssd.models.config import Config
from rssd.repo.db import Database
from rssd.repo.open import open_database
from rssd.webhooks.sender import Sender
from tests.support.webhooks import Receiver, make_config, user
from tests.test_delivery import A, fetch, post, statuses

#: PostgreSQL only: on SQLite one daemon owns the database.
pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

MESSAGES = 4


@contextlib.asynccontextmanager
async def daemon_loop(target: str, config: Config, name: str) -> AsyncIterator[Database]:
    """A delivery loop with a database connection pool of its own, as a daemon has."""
    db = await open_database(target)
    try:
        async with Sender(config.webhooks, config.user_agent) as sender:
            task = asyncio.create_task(DeliveryLoop(db, config, sender, name).run())
            try:
                yield db
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        await db.close()


async def all_delivered(db: Database) -> None:
    """Wait (a hang guard, not a timing) until every message is delivered; a read on a
    pooled connection that was killed too is tried again."""
    async with asyncio.timeout(120):
        while True:
            with contextlib.suppress(psycopg.OperationalError):
                if await statuses(db) == [("alice", "delivered", 1)] * MESSAGES:
                    return
            await asyncio.sleep(0.05)


async def test_killed_connections_give_no_user_a_second_sender(
    db: Database, db_target: str, tmp_path: Path, receiver: Receiver
) -> None:
    async def slow(_: web.Request, __: int) -> web.StreamResponse:
        await asyncio.sleep(0.5)
        return web.Response(status=204)

    receiver.replies["alice"] = slow
    config = make_config(
        tmp_path,
        [A],
        [user("alice", receiver.url("alice"), [A], notify_backlog=True)],
        retry_seconds=[0.05] * 20,
    )
    await sync_sources(db, config)
    for n in range(MESSAGES):
        await fetch(db, A, [post(n)])
    async with daemon_loop(db_target, config, "first"):
        await receiver.wait_for(lambda: receiver.active.get("alice") == 1)
        await db.fetchall(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        async with daemon_loop(db_target, config, "second"):
            await all_delivered(db)
    assert receiver.most_active == 1
    assert receiver.bad == []
