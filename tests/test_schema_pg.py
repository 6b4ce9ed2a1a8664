"""schema_pg.sql on a real PostgreSQL: applied once, idempotent, versioned, guarded."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from rssd.repo.claims import due_page
from rssd.repo.db import DatabaseError
from rssd.repo.dialect import POSTGRES
from rssd.repo.migrations import PG_JOB_DUE_TRIGGER, SCHEMA_VERSION
from rssd.repo.open import open_database
from tests.support.postgres import fresh_database

TABLES = {
    "content_sources", "fetch_job", "posts", "seen_items", "daemons", "config_sync",
    "config_versions", "schema_version", "users", "subscriptions", "deliveries",
    "announced", "skipped_posts", "hosts", "digest_items", "search_backfill",
}  # fmt: skip
INDEXES = {
    "fetch_job_one_active", "fetch_job_source_latest", "fetch_job_due", "fetch_job_lease",
    "fetch_job_host_slot", "posts_fetch_job", "posts_newest", "posts_source_newest",
    "posts_created", "subscriptions_source",
    "deliveries_pending", "deliveries_user", "deliveries_fetch_job", "deliveries_source",
    "posts_search",
}  # fmt: skip
#: Each backend's own search index (rssd/repo/search.py): PostgreSQL's GIN index on
#: posts.search; SQLite's FTS5 table (whose shadow tables' keys are not named indexes).
PG_SEARCH_INDEX = ("posts_search", ("posts", False, False, ("search",)))


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with fresh_database() as created:
        yield created


async def catalog(url: str) -> tuple[set[str], set[str], list[int]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        tables = await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        indexes = await conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
        version = await conn.execute("SELECT version FROM schema_version")
        return (
            {str(row[0]) for row in await tables.fetchall()},
            {str(row[0]) for row in await indexes.fetchall()},
            [int(row[0]) for row in await version.fetchall()],
        )


async def test_daemons_starting_together_create_the_schema_once(url: str) -> None:
    opened = await asyncio.gather(*(open_database(url) for _ in range(4)))
    for db in opened:
        assert await db.schema_version() == SCHEMA_VERSION
        await db.close()
    tables, indexes, versions = await catalog(url)
    assert tables == TABLES
    assert indexes >= INDEXES
    assert versions == [SCHEMA_VERSION]


async def test_a_version_7_database_is_brought_up(url: str) -> None:
    """Version 8 added config_versions (rssd/repo/config_sync.py)."""
    await (await open_database(url)).close()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("DROP TABLE config_versions")
        await conn.execute("UPDATE schema_version SET version = 7")
    await (await open_database(url)).close()
    tables, _, versions = await catalog(url)
    assert "config_versions" in tables
    assert versions == [SCHEMA_VERSION]


async def test_a_database_from_a_newer_rssd_is_refused(url: str) -> None:
    await (await open_database(url)).close()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(DatabaseError, match=r"newer than this rssd understands"):
        await open_database(url)


async def test_the_one_active_job_index_holds(url: str) -> None:
    db = await open_database(url)
    try:
        await db.write_one(
            "INSERT INTO content_sources (url, interval_minutes, timeout_seconds, created_at, "
            "updated_at) VALUES ('http://a.example/', 60, 30, :now, :now)",
            {"now": "2026-11-30T00:00:00.000Z"},
        )
        insert = (
            "INSERT INTO fetch_job (content_source_id, status, queued_at, error_code) "
            "VALUES (1, :status, '2026-11-30T00:00:00.000Z', :error_code)"
        )
        await db.write_one(insert, {"status": "QUEUED", "error_code": None})
        with pytest.raises(psycopg.errors.UniqueViolation, match="fetch_job_one_active"):
            await db.write_one(insert, {"status": "ONGOING", "error_code": None})
        # Finished jobs are not active: any number of them beside the QUEUED one.
        for _ in range(2):
            await db.write_one(insert, {"status": "FAILED", "error_code": "timeout"})
        with pytest.raises(psycopg.errors.CheckViolation):
            await db.write_one(insert, {"status": "FAILED", "error_code": None})
    finally:
        await db.close()


async def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(DatabaseError) as caught:
        await open_database("postgresql://rssd:hunter2@127.0.0.1:1/rssd")
    message = str(caught.value)
    assert "cannot connect to database postgresql://rssd:***@127.0.0.1:1/rssd" in message
    assert "hunter2" not in message


async def test_named_locks_are_exclusive_across_daemons_and_end_with_their_holder(
    url: str,
) -> None:
    """What retention and each user's webhook deliveries run under: one holder at a time."""
    one, two = await open_database(url), await open_database(url)
    try:
        assert await one.try_lock("rssd.prune")
        assert not await two.try_lock("rssd.prune"), "held by the other daemon"
        assert not await one.try_lock("rssd.prune"), "held already, not counted twice"
        assert await two.try_lock("rssd.deliver:1"), "another name is free"
        await one.unlock("rssd.prune")
        assert await two.try_lock("rssd.prune")
        third = await open_database(url)
        assert await third.try_lock("rssd.deliver:2")
        await third.close()  # a daemon that stops (or dies) lets go of everything
        # ... once the server has seen the disconnect, which it handles on its own time.
        deadline = time.monotonic() + 60  # a hang guard only
        while not await one.try_lock("rssd.deliver:2"):
            assert time.monotonic() < deadline, "the closed session's lock was never freed"
            await asyncio.sleep(0.05)
    finally:
        await one.close()
        await two.close()


def sqlite_indexes(path: Path) -> dict[str, tuple[str, bool, bool, tuple[str, ...]]]:
    """Each named index of an SQLite file: (table, unique, partial, key columns), an
    expression key as ``<expr>``."""
    with closing(sqlite3.connect(path)) as conn:
        found = {}
        for name, table in conn.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        ).fetchall():
            listed = {row[1]: row for row in conn.execute(f"PRAGMA index_list({table})")}
            keys = tuple(
                "<expr>" if row[2] is None else str(row[2])
                for row in conn.execute(f"PRAGMA index_xinfo({name})")
                if row[5]  # a key column, not the rowid it points to
            )
            found[str(name)] = (str(table), bool(listed[name][2]), bool(listed[name][4]), keys)
        return found


async def pg_indexes(url: str) -> dict[str, tuple[str, bool, bool, tuple[str, ...]]]:
    """The same for a PostgreSQL database, leaving out the indexes behind a PRIMARY KEY or
    UNIQUE constraint (SQLite's unnamed autoindexes)."""
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT c.relname, t.relname, i.indisunique, i.indpred IS NOT NULL, "
            "  array(SELECT coalesce(a.attname, '<expr>') FROM unnest(i.indkey) WITH ORDINALITY "
            "        AS k(attnum, n) LEFT JOIN pg_attribute a "
            "        ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0 "
            "        ORDER BY k.n) "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_class t ON t.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public' "
            "WHERE NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = i.indexrelid)"
        )
        return {
            str(name): (str(table), bool(unique), bool(partial), tuple(keys))
            for name, table, unique, partial, keys in await cursor.fetchall()
        }


async def test_both_schemas_have_the_same_indexes(url: str, tmp_path: Path) -> None:
    """schema.sql and schema_pg.sql are kept by hand: a fresh database of each must carry
    the same named indexes, on the same tables and key columns."""
    path = tmp_path / "rssd.db"
    await (await open_database(path)).close()
    await (await open_database(url)).close()
    on_sqlite = sqlite_indexes(path)
    assert "posts_newest" in on_sqlite, "the SQLite side was read"
    assert await pg_indexes(url) == {**on_sqlite, PG_SEARCH_INDEX[0]: PG_SEARCH_INDEX[1]}


async def test_both_schemas_have_the_search_index_and_its_state(url: str, tmp_path: Path) -> None:
    """The search index is each backend's own (an FTS5 table, a tsvector column with a GIN
    index); both carry the same backfill state, at "complete" in a fresh database."""
    path = tmp_path / "rssd.db"
    await (await open_database(path)).close()
    await (await open_database(url)).close()
    with closing(sqlite3.connect(path)) as conn:
        fts = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'posts_fts'").fetchone()
        assert "fts5" in fts[0] and "content = ''" in fts[0]
        triggers = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        }
        assert triggers == {"posts_search_insert", "posts_search_update", "posts_search_delete"}
        on_sqlite = conn.execute("SELECT id, next_id, last_id FROM search_backfill").fetchall()
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute(
            "SELECT am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am am ON am.oid = c.relam WHERE c.relname = 'posts_search'"
        )
        assert await cursor.fetchall() == [("gin",)]
        cursor = await conn.execute("SELECT id, next_id, last_id FROM search_backfill")
        assert await cursor.fetchall() == on_sqlite == [(1, 1, 0)]


def test_the_job_due_trigger_is_the_same_in_the_schema_and_its_migration() -> None:
    """Fresh databases get it from schema_pg.sql, older ones from PG_MIGRATIONS[9]."""
    schema = (Path(__file__).parent.parent / "schema_pg.sql").read_text()
    assert PG_JOB_DUE_TRIGGER.strip() in schema


async def test_a_claim_reads_its_page_of_due_jobs_off_the_index_unsorted(url: str) -> None:
    """Claims take due jobs in (not_before, id) order. Before version 18 the index ended at
    not_before, so PostgreSQL sorted every due job for each page (a hash join and a top-N
    sort of 20,000 for each claim of 50, bench/cluster.py); now it reads the page off
    ``fetch_job_due``. Scans off, so that the plan shows what the index can give."""
    await (await open_database(url)).close()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SET enable_seqscan = off")
        cursor = await conn.execute("EXPLAIN " + due_page(POSTGRES).replace(":page", "200"))
        text = "\n".join(str(row[0]) for row in await cursor.fetchall())
    assert "fetch_job_due" in text, text
    assert "Sort" not in text, text


async def test_a_version_17_database_gets_the_due_jobs_index_in_the_claims_order(
    url: str,
) -> None:
    """As on SQLite: the upgrade to version 18 replaces fetch_job_due on not_before alone."""
    await (await open_database(url)).close()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("DROP INDEX fetch_job_due")
        await conn.execute(
            "CREATE INDEX fetch_job_due ON fetch_job (not_before) WHERE status = 'QUEUED'"
        )
        await conn.execute("UPDATE schema_version SET version = 17")
    await (await open_database(url)).close()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'fetch_job_due'"
        )
        ((definition,),) = await cursor.fetchall()
    assert "(not_before, id)" in definition, definition
    _, _, versions = await catalog(url)
    assert versions == [SCHEMA_VERSION]
