"""Opening a database whose schema is current takes no lock: a command (``rssd
redeliver``, ``rssd users --enable``) must not wait behind a long lock on a table it does
not touch, nor behind the daemon's writes, to re-apply a schema that is already there.
The issue saw every CLI write command re-run schema_pg.sql, and so wait on any table lock."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from rssd.repo.db import Database
from rssd.repo.migrations import SCHEMA_VERSION
from rssd.repo.open import open_database
from rssd.repo.outbox import OutboxRepo

pytestmark = pytest.mark.both_backends


async def open_and_use(target: Path | str) -> None:
    opened = await open_database(target)
    try:
        assert await opened.schema_version() == SCHEMA_VERSION
        assert await OutboxRepo(opened).recent() == []
    finally:
        await opened.close()


async def test_a_current_database_opens_for_writing_beside_a_held_lock(
    db: Database, db_target: Path | str
) -> None:
    assert await db.schema_version() == SCHEMA_VERSION  # the fixture created it
    if isinstance(db_target, Path):  # another process holds SQLite's write lock
        holder = sqlite3.connect(db_target, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    else:  # another session holds a table lock for long
        pg = await psycopg.AsyncConnection.connect(db_target)
        await pg.execute("LOCK TABLE fetch_job IN ACCESS EXCLUSIVE MODE")
    opening = asyncio.create_task(open_and_use(db_target))
    # A hang guard, not a timing: before, the open waited for the lock (SQLite gave up
    # after its 10 s busy_timeout; PostgreSQL waited as long as the lock was held).
    done, _ = await asyncio.wait({opening}, timeout=30)
    if isinstance(db_target, Path):
        with closing(holder):
            holder.execute("ROLLBACK")
    else:
        await pg.rollback()
        await pg.close()
    assert opening in done, "the open waited for a lock"
    await opening
