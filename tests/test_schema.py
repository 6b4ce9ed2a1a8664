"""schema.sql, open_database and the migration path, on real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from rssd.repo.db import Database, DatabaseError, Tx
from rssd.repo.migrations import MIGRATIONS, SCHEMA_VERSION, schema_sql
from rssd.repo.open import open_database
from rssd.repo.sqlite import BUSY_TIMEOUT_MS, SqliteDatabase
from rssd.repo.sqlite_writer import vacuum_on_disk

SCHEMA_V1 = Path(__file__).parent / "fixtures" / "schema_v1.sql"
NOW = "2026-11-29T10:00:00.000Z"
TABLES = ("content_sources", "fetch_job", "posts")
V2_INDEXES = ("posts_fetch_job", "posts_published")
V5_TABLES = ("users", "subscriptions", "deliveries")
V5_INDEXES = (
    "subscriptions_source",
    "deliveries_pending",
    "deliveries_user",
    "deliveries_fetch_job",
)
V6_INDEXES = ("posts_newest", "posts_source_newest", "posts_created")
#: The posts indexes of the newest schema (version 6 dropped posts_published).
POSTS_INDEXES = ("posts_fetch_job", *V6_INDEXES)
V7_INDEXES = ("fetch_job_due", "fetch_job_lease", "fetch_job_host_slot")
V7_TABLES = ("daemons", "config_sync")
V11_TABLES = ("hosts",)
V11_SOURCE_COLUMNS = ("interval_fixed", "min_interval_minutes", "max_interval_minutes")
V11_JOB_COLUMNS = ("interval_seconds", "interval_reason")
V12_TABLES = ("digest_items",)
V12_USER_COLUMNS = ("digest", "timezone")
V15_USER_COLUMNS = ("sender", "sender_until", "paused_until")
V9_INDEXES = ("skipped_posts_time",)
V9_TABLES = ("announced", "skipped_posts")
V9_COLUMNS = {
    "users": ("format", "include_content", "dedupe_days"),
    "posts": ("tags", "enclosures"),
}
V13_INDEXES = ("deliveries_source",)
V19_INDEXES = ("content_sources_pages",)
#: Version 13's search index (rssd/repo/search.py): its triggers, then its tables.
V13_TRIGGERS = ("posts_search_insert", "posts_search_update", "posts_search_delete")
V13_TABLES = ("posts_fts", "search_queue", "search_backfill")
V13_INSERT_TRIGGER = """CREATE TRIGGER posts_search_insert AFTER INSERT ON posts BEGIN
    INSERT INTO search_queue (post_id, unindex) VALUES (new.id, 0);
END"""
V7_JOB_COLUMNS = (
    "not_before", "failures", "fetch_url", "moved_seen",
    "claimed_by", "lease_expires_at", "host", "host_slot",
)  # fmt: skip


def sqlite_path(db: Database) -> Path:
    assert isinstance(db, SqliteDatabase)
    return db.path


def worker_threads() -> list[threading.Thread]:
    """aiosqlite's per-connection threads that are still running."""
    return [
        thread
        for thread in threading.enumerate()
        if "_connection_worker_thread" in thread.name and thread.is_alive()
    ]


def join_worker_threads() -> None:
    for thread in worker_threads():
        thread.join(timeout=10)


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A second, plain sqlite3 connection: what another process would see."""
    with closing(sqlite3.connect(path)) as conn:
        return list(conn.execute(sql, params).fetchall())


def user_version(path: Path) -> int:
    return int(query(path, "PRAGMA user_version")[0][0])


def index_names(path: Path) -> set[str]:
    rows = query(path, "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    return {str(row[0]) for row in rows}


def listdir(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def schema_objects(path: Path) -> list[tuple[Any, ...]]:
    return query(path, "SELECT type, name, sql FROM sqlite_master ORDER BY type, name")


async def add_source(db: Database, url: str = "http://a.example/feed") -> int:
    row = await db.write(
        lambda tx: tx.fetchone(
            "INSERT INTO content_sources (url, interval_minutes, timeout_seconds, created_at, "
            "updated_at) VALUES (:url, 60, 30.0, :now, :now) RETURNING id",
            {"url": url, "now": NOW},
        )
    )
    assert row is not None
    return int(row[0])


async def add_job(db: Database, source_id: int, status: str = "COMPLETED") -> int:
    error = "internal" if status == "FAILED" else None
    row = await db.write(
        lambda tx: tx.fetchone(
            "INSERT INTO fetch_job (content_source_id, status, queued_at, error_code) "
            "VALUES (:source, :status, :now, :error) RETURNING id",
            {"source": source_id, "status": status, "now": NOW, "error": error},
        )
    )
    assert row is not None
    return int(row[0])


async def add_post(db: Database, source_id: int, job_id: int | None, external_id: str) -> int:
    row = await db.write(
        lambda tx: tx.fetchone(
            "INSERT INTO posts (content_source_id, fetch_job_id, external_id, created_at, "
            "content_hash) VALUES (:source, :job, :ext, :now, 'h') RETURNING id",
            {"source": source_id, "job": job_id, "ext": external_id, "now": NOW},
        )
    )
    assert row is not None
    return int(row[0])


# --- a fresh database ------------------------------------------------------------------


async def test_a_fresh_database_gets_the_current_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "rssd.sqlite3"  # missing folders are created
    db = await open_database(path)
    await db.close()
    assert max(MIGRATIONS) + 1 == SCHEMA_VERSION
    assert user_version(path) == SCHEMA_VERSION
    names = {str(row[0]) for row in query(path, "SELECT name FROM sqlite_master")}
    assert set(TABLES) <= names
    assert {"fetch_job_one_active", "fetch_job_source_latest", *POSTS_INDEXES} <= names
    assert "posts_published" not in names


@pytest.mark.parametrize(
    ("pragma", "expected"),
    [
        ("journal_mode", "wal"),
        ("foreign_keys", 1),
        ("synchronous", 1),  # NORMAL
        ("busy_timeout", BUSY_TIMEOUT_MS),
    ],
)
async def test_connection_pragmas(db: Database, pragma: str, expected: object) -> None:
    row = await db.fetchone(f"PRAGMA {pragma}")
    assert row is not None
    assert row[0] == expected


async def test_the_writer_journals_in_memory_and_vacuums_through_a_file(
    db: Database, tmp_path: Path
) -> None:
    """The writer's statement journals stay in memory (temp_store 2); VACUUM's copy of the
    database goes to a temporary file, for its own run only."""
    assert isinstance(db, SqliteDatabase) and db._writer is not None

    def temp_store(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA temp_store").fetchone()[0])

    assert await db._writer.call(temp_store) == 2
    await db.vacuum()
    assert await db._writer.call(temp_store) == 2
    with closing(sqlite3.connect(tmp_path / "plain.sqlite3", isolation_level=None)) as conn:
        seen: list[str] = []
        conn.set_trace_callback(seen.append)
        vacuum_on_disk(conn)
        assert seen == [
            "PRAGMA temp_store = FILE",
            "VACUUM",
            "PRAGMA temp_store = MEMORY",
        ]


async def test_wal_mode_persists_in_the_file(db: Database) -> None:
    assert query(sqlite_path(db), "PRAGMA journal_mode") == [("wal",)]


async def test_every_table_is_strict(db: Database) -> None:
    rows = query(
        sqlite_path(db), "SELECT name, strict FROM pragma_table_list WHERE schema = 'main'"
    )
    strict = {str(name): flag for name, flag in rows}
    assert all(strict[table] == 1 for table in TABLES), strict


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        (
            "INSERT INTO content_sources (url, interval_minutes, timeout_seconds, created_at, "
            "updated_at) VALUES ('http://x/', 'sixty', 30.0, 'now', 'now')",
            {},
        ),
        (
            "INSERT INTO content_sources (url, interval_minutes, timeout_seconds, created_at, "
            "updated_at) VALUES ('http://x/', 60, 'thirty', 'now', 'now')",
            {},
        ),
        (
            "INSERT INTO fetch_job (content_source_id, status, queued_at) "
            "VALUES ('one', 'QUEUED', 'now')",
            {},
        ),
        (
            "INSERT INTO content_sources (url, interval_minutes, timeout_seconds, created_at, "
            "updated_at) VALUES (x'00', 60, 30.0, 'now', 'now')",
            {},
        ),
    ],
    ids=["text-in-integer", "text-in-real", "text-in-foreign-key", "blob-in-text"],
)
async def test_strict_tables_refuse_a_value_of_the_wrong_type(
    db: Database, sql: str, params: dict[str, object]
) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="cannot store"):
        await db.write(lambda tx: tx.execute(sql, params))


@pytest.mark.parametrize(
    ("status", "error_code"),
    [
        ("RUNNING", None),
        ("FAILED", None),  # a FAILED job always says why
        ("COMPLETED", "timeout"),  # a COMPLETED one never carries an error
        ("FAILED", "exploded"),  # not one of the error codes (rssd/models/codes.py)
    ],
)
async def test_fetch_job_check_constraints(
    db: Database, status: str, error_code: str | None
) -> None:
    source = await add_source(db)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        await db.write(
            lambda tx: tx.execute(
                "INSERT INTO fetch_job (content_source_id, status, queued_at, error_code) "
                "VALUES (:s, :status, :now, :code)",
                {"s": source, "status": status, "now": NOW, "code": error_code},
            )
        )


@pytest.mark.parametrize(
    ("column", "value"), [("interval_minutes", 0), ("timeout_seconds", -1.0), ("enabled", 2)]
)
async def test_content_sources_check_constraints(db: Database, column: str, value: object) -> None:
    values = {"interval_minutes": 60, "timeout_seconds": 30.0, "enabled": 1, column: value}
    with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint failed"):
        await db.write(
            lambda tx: tx.execute(
                "INSERT INTO content_sources (url, interval_minutes, timeout_seconds, enabled, "
                "created_at, updated_at) VALUES ('http://x/', :interval_minutes, "
                ":timeout_seconds, :enabled, 'now', 'now')",
                values,
            )
        )


async def test_source_urls_are_unique(db: Database) -> None:
    await add_source(db, "http://a.example/")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        await add_source(db, "http://a.example/")


async def test_posts_are_unique_per_source_and_external_id(db: Database) -> None:
    one, two = await add_source(db, "http://a.example/"), await add_source(db, "http://b.example/")
    await add_post(db, one, None, "guid-1")
    await add_post(db, two, None, "guid-1")  # the same id in another feed is another post
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        await add_post(db, one, None, "guid-1")


async def test_the_partial_unique_index_allows_one_active_job_per_source(db: Database) -> None:
    one, two = await add_source(db, "http://a.example/"), await add_source(db, "http://b.example/")
    for status in ("COMPLETED", "FAILED", "COMPLETED"):
        await add_job(db, one, status)  # finished jobs: as many as you like
    await add_job(db, one, "QUEUED")
    await add_job(db, two, "ONGOING")  # another source has its own slot
    for status in ("QUEUED", "ONGOING"):
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            await add_job(db, one, status)


async def test_a_sources_latest_job_is_found_through_an_index(db: Database) -> None:
    rows = await db.fetchall(
        "EXPLAIN QUERY PLAN SELECT * FROM fetch_job WHERE content_source_id = 1 "
        "ORDER BY id DESC LIMIT 1"
    )
    plan = " | ".join(str(row["detail"]) for row in rows)
    assert "fetch_job_source_latest" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


async def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        await add_job(db, 999)


async def test_deleting_a_source_cascades_to_its_jobs_and_posts(db: Database) -> None:
    gone, kept = (
        await add_source(db, "http://a.example/"),
        await add_source(db, "http://b.example/"),
    )
    for source in (gone, kept):
        job = await add_job(db, source)
        await add_post(db, source, job, "p1")
        await add_post(db, source, job, "p2")
    await db.write(
        lambda tx: tx.execute("DELETE FROM content_sources WHERE id = :id", {"id": gone})
    )
    jobs = await db.fetchall("SELECT content_source_id FROM fetch_job")
    posts = await db.fetchall("SELECT content_source_id FROM posts")
    assert [row[0] for row in jobs] == [kept]
    assert [row[0] for row in posts] == [kept, kept]


async def test_deleting_a_job_keeps_its_posts(db: Database) -> None:
    source = await add_source(db)
    job = await add_job(db, source)
    post = await add_post(db, source, job, "p1")
    await db.write(lambda tx: tx.execute("DELETE FROM fetch_job WHERE id = :id", {"id": job}))
    row = await db.fetchone("SELECT id, fetch_job_id FROM posts")
    assert row is not None
    assert tuple(row) == (post, None)


# --- opening again, migrating, refusing ------------------------------------------------


async def test_opening_twice_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "rssd.sqlite3"
    db = await open_database(path)
    source = await add_source(db)
    await add_post(db, source, await add_job(db, source), "p1")
    await db.close()
    before = schema_objects(path)
    for _ in range(2):
        db = await open_database(path)
        await db.close()
    assert schema_objects(path) == before
    assert user_version(path) == SCHEMA_VERSION
    assert query(path, "SELECT count(*) FROM content_sources") == [(1,)]
    assert query(path, "SELECT count(*) FROM fetch_job") == [(1,)]
    assert query(path, "SELECT external_id FROM posts") == [("p1",)]


async def test_two_connections_on_one_file_open_and_see_each_others_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rssd.sqlite3"
    first = await open_database(path)
    second = await open_database(path)
    try:
        await add_source(first)
        row = await second.fetchone("SELECT url FROM content_sources")
        assert row is not None
        assert row[0] == "http://a.example/feed"
    finally:
        await first.close()
        await second.close()


def make_v1_database(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(SCHEMA_V1.read_text(encoding="utf-8"))
        conn.executescript(
            f"""
            INSERT INTO content_sources (id, url, name, interval_minutes, timeout_seconds,
                enabled, created_at, updated_at)
            VALUES (1, 'http://a.example/feed', 'A', 60, 30.0, 1, '{NOW}', '{NOW}'),
                   (2, 'http://b.example/feed', NULL, 15, 5.0, 0, '{NOW}', '{NOW}');
            INSERT INTO fetch_job (id, content_source_id, status, queued_at, ended_at,
                error_code, posts_count, http_status, etag)
            VALUES (1, 1, 'COMPLETED', '{NOW}', '{NOW}', NULL, 2, 200, '"v1"'),
                   (2, 2, 'FAILED', '{NOW}', '{NOW}', 'timeout', 0, NULL, NULL);
            INSERT INTO posts (content_source_id, fetch_job_id, external_id, title,
                published_at, created_at, content_hash)
            VALUES (1, 1, 'guid-1', 'One', '2026-11-01T00:00:00.000Z', '{NOW}', 'h1'),
                   (1, 1, 'guid-2', 'Two', NULL, '{NOW}', 'h2');
            """
        )
        conn.commit()


def test_the_v1_fixture_is_schema_sql_without_the_later_indexes(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    make_v1_database(path)
    assert user_version(path) == 1
    assert not set(V2_INDEXES) & index_names(path)
    current = tmp_path / "current.sqlite3"
    with closing(sqlite3.connect(current)) as conn:
        conn.executescript(schema_sql())
    assert index_names(current) - index_names(path) == {
        "posts_fetch_job",
        *V5_INDEXES,
        *V6_INDEXES,
        *V7_INDEXES,
        *V9_INDEXES,
        *V13_INDEXES,
        *V19_INDEXES,
    }
    assert "posts_published" not in index_names(path) | index_names(current)


async def test_a_version_1_database_is_migrated_with_its_data_intact(tmp_path: Path) -> None:
    path = tmp_path / "rssd.sqlite3"
    make_v1_database(path)
    tables = ("content_sources", "fetch_job", "posts")
    before = {table: query(path, f"SELECT * FROM {table} ORDER BY id") for table in tables}
    v1_job_columns = [str(row[1]) for row in query(path, "PRAGMA table_info(fetch_job)")]

    db = await open_database(path)
    try:
        plan = await db.fetchall("EXPLAIN QUERY PLAN SELECT id FROM posts WHERE fetch_job_id = 1")
        assert "posts_fetch_job" in " ".join(str(row["detail"]) for row in plan)
    finally:
        await db.close()

    assert user_version(path) == SCHEMA_VERSION
    assert {*POSTS_INDEXES, *V7_INDEXES, *V13_INDEXES, *V19_INDEXES} <= index_names(path)
    assert "posts_published" not in index_names(path)
    after = {
        table: query(
            path,
            f"SELECT {', '.join(v1_job_columns) if table == 'fetch_job' else '*'} "
            f"FROM {table} ORDER BY id",
        )
        for table in tables
    }
    # Version 4 added three columns to content_sources, NULL in migrated rows.
    # Version 11 three more, with their defaults (adaptive polling between 15 and 1440 min).
    assert [row[:-6] for row in after["content_sources"]] == before["content_sources"]
    assert {row[-6:-3] for row in after["content_sources"]} == {(None, None, None)}
    assert {row[-3:] for row in after["content_sources"]} == {(0, 15.0, 1440.0)}
    assert [row[:-2] for row in after["posts"]] == before["posts"]  # version 9's two
    assert {row[-2:] for row in after["posts"]} == {(None, None)}
    assert after["fetch_job"] == before["fetch_job"]
    # Version 7's columns, with their defaults on the jobs that were there.
    assert (
        query(path, f"SELECT {', '.join(V7_JOB_COLUMNS)} FROM fetch_job")
        == [(None, 0, None, 0, None, None, None, None)] * 2
    )
    # The migrated file is the same schema a fresh database gets.
    fresh = tmp_path / "fresh.sqlite3"
    db = await open_database(fresh)
    await db.close()
    assert {(t, n) for t, n, _ in schema_objects(path)} == {
        (t, n) for t, n, _ in schema_objects(fresh)
    }


async def test_a_failed_migration_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "rssd.sqlite3"
    make_v1_database(path)
    # Something already uses the name version 2 wants for an index: the step fails.
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE posts_published (x INTEGER)")
        conn.commit()
    before = schema_objects(path)
    with pytest.raises(DatabaseError, match="posts_published"):
        await open_database(path)
    assert user_version(path) == 1
    assert schema_objects(path) == before


@pytest.mark.parametrize("newer", [SCHEMA_VERSION + 1, 999])
async def test_a_database_from_a_newer_rssd_is_refused(tmp_path: Path, newer: int) -> None:
    path = tmp_path / "rssd.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE from_the_future (x INTEGER)")
        conn.execute(f"PRAGMA user_version = {newer}")
        conn.commit()
    with pytest.raises(DatabaseError, match=rf"schema version {newer}, newer than .*upgrade"):
        await open_database(path)
    assert user_version(path) == newer
    names = {str(row[0]) for row in query(path, "SELECT name FROM sqlite_master")}
    assert names == {"from_the_future"}, "nothing of ours was written into it"


@pytest.mark.parametrize(
    "content",
    [b"this is not a database, just some text " * 40, bytes(range(256)) * 8],
    ids=["text", "binary"],
)
async def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "rssd.sqlite3"
    path.write_bytes(content)
    with pytest.raises(DatabaseError, match=str(path)):
        await open_database(path)
    assert path.read_bytes() == content


async def test_a_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rssd.sqlite3"
    path.mkdir()
    with pytest.raises(DatabaseError, match="cannot open database"):
        await open_database(path)


@pytest.mark.parametrize("readonly", [False, True])
async def test_a_failed_open_leaves_no_worker_thread_behind(tmp_path: Path, readonly: bool) -> None:
    target = tmp_path if not readonly else tmp_path / "missing.sqlite3"
    before = worker_threads()
    try:
        await open_database(target, readonly=readonly)
    except DatabaseError:
        left = [thread for thread in worker_threads() if thread not in before]
    else:
        raise AssertionError("the open should have failed")
    assert left == []


# --- read-only connections -------------------------------------------------------------


async def test_a_readonly_connection_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "rssd.sqlite3"
    db = await open_database(path)
    await add_source(db)
    reader = await open_database(path, readonly=True)
    try:
        row = await reader.fetchone("SELECT count(*) FROM content_sources")
        assert row is not None
        assert row[0] == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await add_source(reader, "http://b.example/")
    finally:
        await reader.close()
        await db.close()


async def test_a_readonly_open_of_a_missing_file_fails_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "missing.sqlite3"
    with pytest.raises(DatabaseError, match="cannot open database"):
        await open_database(path, readonly=True)
    assert listdir(tmp_path) == []


@pytest.mark.parametrize("folder", ["feeds#2", "what?", "100%25"])
async def test_a_readonly_open_honours_special_characters_in_the_path(
    tmp_path: Path, folder: str
) -> None:
    path = tmp_path / folder / "rssd.sqlite3"
    db = await open_database(path)
    await add_source(db)
    await db.close()
    before = listdir(tmp_path)
    reader = await open_database(path, readonly=True)
    try:
        row = await reader.fetchone("SELECT count(*) FROM content_sources")
    finally:
        await reader.close()
    assert listdir(tmp_path) == before, "no stray file was created"
    assert row is not None
    assert row[0] == 1


# --- the write path --------------------------------------------------------------------


async def test_a_write_that_raises_is_rolled_back(db: Database) -> None:
    async def work(tx: Tx) -> None:
        await tx.execute(
            "INSERT INTO content_sources (url, interval_minutes, timeout_seconds, created_at, "
            "updated_at) VALUES ('http://x/', 60, 30.0, 'now', 'now')"
        )
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await db.write(work)
    assert await db.fetchall("SELECT * FROM content_sources") == []
    await add_source(db)  # the connection is usable again: no transaction left open


async def test_a_cancelled_writer_still_finishes_its_transaction(db: Database) -> None:
    """The cancel arrives while a slow statement runs between the two inserts. A write
    awaits only its statements (SQLite runs it whole in its thread), so the work tells
    the loop it began with ``call_soon_threadsafe``, which is right from either side."""
    loop = asyncio.get_running_loop()
    began = asyncio.Event()

    async def work(tx: Tx) -> None:
        await tx.execute(
            "INSERT INTO content_sources (url, interval_minutes, timeout_seconds, created_at, "
            "updated_at) VALUES ('http://first/', 60, 30.0, 'now', 'now')"
        )
        loop.call_soon_threadsafe(began.set)
        await tx.fetchall(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 2000000) "
            "SELECT count(*) FROM c"
        )
        await tx.execute(
            "INSERT INTO content_sources (url, interval_minutes, timeout_seconds, created_at, "
            "updated_at) VALUES ('http://second/', 60, 30.0, 'now', 'now')"
        )

    task = asyncio.create_task(db.write(work))
    await began.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = await db.fetchall("SELECT url FROM content_sources ORDER BY id")
    assert [row[0] for row in rows] == ["http://first/", "http://second/"]
    await add_source(db)  # and the connection is usable again


async def test_version_4_adds_the_feed_columns_as_a_fresh_database_has_them(
    tmp_path: Path,
) -> None:
    """3 -> 4 (issue #10): feed_title, feed_url, category on content_sources, in the same
    order a fresh database has them, existing rows kept."""
    path = tmp_path / "v3.sqlite3"
    make_v1_database(path)
    with closing(sqlite3.connect(path)) as conn:  # bring it to 3 with the real steps
        for step in (1, 2):
            conn.executescript(MIGRATIONS[step])
        conn.execute("PRAGMA user_version = 3")
        conn.commit()
    columns = [row[1] for row in query(path, "PRAGMA table_info(content_sources)")]
    assert "feed_title" not in columns
    db = await open_database(path)
    await db.close()
    fresh = tmp_path / "fresh.sqlite3"
    db = await open_database(fresh)
    await db.close()
    migrated = [row[1] for row in query(path, "PRAGMA table_info(content_sources)")]
    assert migrated == [row[1] for row in query(fresh, "PRAGMA table_info(content_sources)")]
    assert migrated[-6:-3] == ["feed_title", "feed_url", "category"]
    assert query(path, "SELECT url, feed_title FROM content_sources") != []


def drop_version_20(conn: sqlite3.Connection) -> None:
    """Take version 20's column out of today's schema."""
    conn.execute("ALTER TABLE config_sync DROP COLUMN checked_by")


def drop_version_17(conn: sqlite3.Connection) -> None:
    """Take version 17's column out of today's schema."""
    conn.execute("ALTER TABLE daemons DROP COLUMN database_wait_since")


def drop_version_16(conn: sqlite3.Connection) -> None:
    """Take version 16 (and 17) out of today's schema: the insert trigger queues every
    post again."""
    drop_version_17(conn)
    conn.execute("DROP TRIGGER posts_search_insert")
    conn.execute("DROP TABLE search_direct")
    conn.execute(V13_INSERT_TRIGGER)


def drop_version_15(conn: sqlite3.Connection) -> None:
    """Take version 15's columns (and version 16) out of today's schema."""
    drop_version_16(conn)
    for column in V15_USER_COLUMNS:
        conn.execute(f"ALTER TABLE users DROP COLUMN {column}")


def drop_version_14(conn: sqlite3.Connection) -> None:
    """Take version 14's column (and version 15's) out of today's schema."""
    drop_version_15(conn)
    conn.execute("ALTER TABLE deliveries DROP COLUMN earlier_attempts")


def drop_version_13(conn: sqlite3.Connection) -> None:
    """Take version 13's objects out of today's schema (the search index, an index)."""
    for trigger in V13_TRIGGERS:
        conn.execute(f"DROP TRIGGER {trigger}")
    for table in V13_TABLES:
        conn.execute(f"DROP TABLE {table}")
    for index in V13_INDEXES:
        conn.execute(f"DROP INDEX {index}")


def drop_version_12(conn: sqlite3.Connection) -> None:
    """Take version 12's objects out of today's schema (its table and columns)."""
    for table in V12_TABLES:
        conn.execute(f"DROP TABLE {table}")
    for column in V12_USER_COLUMNS:
        conn.execute(f"ALTER TABLE users DROP COLUMN {column}")


def drop_version_11(conn: sqlite3.Connection) -> None:
    """Take version 11's objects out of today's schema (its table and columns)."""
    for table in V11_TABLES:
        conn.execute(f"DROP TABLE {table}")
    for column in V11_SOURCE_COLUMNS:
        conn.execute(f"ALTER TABLE content_sources DROP COLUMN {column}")
    for column in V11_JOB_COLUMNS:
        conn.execute(f"ALTER TABLE fetch_job DROP COLUMN {column}")


def drop_version_9(conn: sqlite3.Connection) -> None:
    """Take version 9's objects out of today's schema (its index, tables, columns)."""
    for index in V9_INDEXES:
        conn.execute(f"DROP INDEX {index}")
    for table in V9_TABLES:
        conn.execute(f"DROP TABLE {table}")
    for table, columns in V9_COLUMNS.items():
        for column in columns:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")


def drop_version_7(conn: sqlite3.Connection) -> None:
    """Take version 7's objects (and the later ones') out of today's schema."""
    drop_version_14(conn)
    drop_version_13(conn)
    drop_version_12(conn)
    drop_version_11(conn)
    drop_version_9(conn)
    for index in V7_INDEXES:
        conn.execute(f"DROP INDEX {index}")
    for table in V7_TABLES:
        conn.execute(f"DROP TABLE {table}")
    for column in V7_JOB_COLUMNS:
        conn.execute(f"ALTER TABLE fetch_job DROP COLUMN {column}")


def make_v4_database(path: Path) -> None:
    """Today's schema without version 5's and 7's objects (version 6's indexes are created
    with IF NOT EXISTS): a database rssd 4 left behind, with data."""
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(schema_sql())
        drop_version_7(conn)
        for table in reversed(V5_TABLES):
            conn.execute(f"DROP TABLE {table}")
        conn.execute(
            "INSERT INTO content_sources (url, interval_minutes, timeout_seconds, created_at, "
            "updated_at) VALUES ('http://a.example/feed', 60, 30.0, ?, ?)",
            (NOW, NOW),
        )
        conn.execute("PRAGMA user_version = 4")
        conn.commit()


def test_migration_4_alone_builds_what_schema_sql_builds(tmp_path: Path) -> None:
    """The step itself, not schema.sql running after it, creates version 5's objects."""
    path = tmp_path / "v4.sqlite3"
    make_v4_database(path)
    assert not set(V5_TABLES) & {
        str(row[0]) for row in query(path, "SELECT name FROM sqlite_master")
    }
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(MIGRATIONS[4])
    fresh = tmp_path / "fresh.sqlite3"
    with closing(sqlite3.connect(fresh)) as conn:
        conn.executescript(schema_sql())
        drop_version_7(conn)
    # (DROP COLUMN leaves "...NOT NULL) STRICT" where the file had a line break.)
    normalized = {(t, n, " ".join(str(sql).split())) for t, n, sql in schema_objects(path)}
    expected = {
        (t, n, " ".join(str(sql).split()).replace("NULL) STRICT", "NULL ) STRICT"))
        for t, n, sql in schema_objects(fresh)
    }
    assert normalized == expected


def test_migration_6_alone_adds_what_schema_sql_has_for_version_7(tmp_path: Path) -> None:
    """The step itself creates version 7's tables, indexes and fetch_job columns (ALTER
    TABLE appends the columns, so the table's text differs; its columns do not)."""
    path = tmp_path / "v6.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(schema_sql())
        drop_version_7(conn)
        conn.executescript(MIGRATIONS[6])
    fresh = tmp_path / "fresh.sqlite3"
    with closing(sqlite3.connect(fresh)) as conn:
        conn.executescript(schema_sql())
        drop_version_14(conn)
        drop_version_13(conn)
        drop_version_12(conn)
        drop_version_11(conn)
        drop_version_9(conn)
    assert {(t, n) for t, n, _ in schema_objects(path)} == {
        (t, n) for t, n, _ in schema_objects(fresh)
    }

    def columns(db: Path) -> set[tuple[object, ...]]:
        return {tuple(row[1:]) for row in query(db, "PRAGMA table_info(fetch_job)")}

    assert columns(path) == columns(fresh)


async def test_a_version_4_database_is_migrated_to_5_with_its_data_intact(tmp_path: Path) -> None:
    path = tmp_path / "rssd.sqlite3"
    make_v4_database(path)
    before = query(path, "SELECT * FROM content_sources")
    db = await open_database(path)
    try:
        user = await db.write(
            lambda tx: tx.fetchone(
                "INSERT INTO users (name, webhook_url, config_digest, created_at, updated_at) "
                "VALUES ('alice', 'https://h.example/', 'd', :now, :now) RETURNING id",
                {"now": NOW},
            )
        )
        assert user is not None
        await db.write(
            lambda tx: tx.execute(
                "INSERT INTO subscriptions (user_id, content_source_id, created_at) "
                "VALUES (:user, 1, :now)",
                {"user": user[0], "now": NOW},
            )
        )
    finally:
        await db.close()
    assert user_version(path) == SCHEMA_VERSION  # 5 and every later step
    assert [row[:-3] for row in query(path, "SELECT * FROM content_sources")] == before
    assert query(path, "SELECT user_id, content_source_id, primed FROM subscriptions") == [
        (1, 1, 1)
    ]


async def test_deleting_a_source_cascades_to_subscriptions_and_deliveries(db: Database) -> None:
    source = await add_source(db)

    async def work(tx: Tx) -> None:
        await tx.execute(
            "INSERT INTO users (id, name, webhook_url, config_digest, created_at, updated_at) "
            "VALUES (1, 'alice', 'https://h.example/', 'd', :now, :now)",
            {"now": NOW},
        )
        await tx.execute(
            "INSERT INTO subscriptions (user_id, content_source_id, created_at) "
            "VALUES (1, :source, :now)",
            {"source": source, "now": NOW},
        )
        await tx.execute(
            "INSERT INTO deliveries (id, user_id, content_source_id, posts_count, body, "
            "next_attempt_at, created_at, updated_at) "
            "VALUES ('msg_1', 1, :source, 1, '{}', :now, :now, :now)",
            {"source": source, "now": NOW},
        )

    await db.write(work)
    await db.write(
        lambda tx: tx.execute("DELETE FROM content_sources WHERE id = :id", {"id": source})
    )
    assert await db.fetchall("SELECT * FROM subscriptions") == []
    assert await db.fetchall("SELECT * FROM deliveries") == []


def test_migration_8_alone_adds_version_9s_columns(tmp_path: Path) -> None:
    """The step adds the columns; its two tables come from schema.sql (IF NOT EXISTS)."""
    path = tmp_path / "v8.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(schema_sql())
        drop_version_9(conn)
        conn.executescript(MIGRATIONS[8])
    fresh = tmp_path / "fresh.sqlite3"
    with closing(sqlite3.connect(fresh)) as conn:
        conn.executescript(schema_sql())
    for table in V9_COLUMNS:
        sql = f"SELECT name, type, \"notnull\", dflt_value FROM pragma_table_info('{table}')"
        assert set(query(path, sql)) == set(query(fresh, sql))  # ALTER appends: order differs


def test_migration_10_alone_adds_what_schema_sql_has_for_version_11(tmp_path: Path) -> None:
    """The step itself creates version 11's table and columns, as a fresh database has them."""
    path = tmp_path / "v10.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(schema_sql())
        drop_version_11(conn)
        conn.executescript(MIGRATIONS[10])
    fresh = tmp_path / "fresh.sqlite3"
    with closing(sqlite3.connect(fresh)) as conn:
        conn.executescript(schema_sql())
    assert {(t, n) for t, n, _ in schema_objects(path)} == {
        (t, n) for t, n, _ in schema_objects(fresh)
    }
    for table in ("content_sources", "fetch_job"):
        info = f"PRAGMA table_info({table})"
        assert {tuple(r[1:]) for r in query(path, info)} == {
            tuple(r[1:]) for r in query(fresh, info)
        }


async def test_a_version_13_database_gets_earlier_attempts(tmp_path: Path) -> None:
    """Version 14: a redelivered message keeps the count of its earlier attempts."""
    path = tmp_path / "rssd.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(schema_sql())
        drop_version_20(conn)
        drop_version_14(conn)
        conn.execute("PRAGMA user_version = 13")
        conn.commit()
    await (await open_database(path)).close()
    assert user_version(path) == SCHEMA_VERSION
    columns = {str(row[1]) for row in query(path, "PRAGMA table_info(deliveries)")}
    assert "earlier_attempts" in columns


@pytest.mark.parametrize(
    ("step", "drop_next"),
    [
        # daemons.database_wait_since: rssd status shows a daemon's wait.
        (16, drop_version_17),
        # config_sync.checked_by: which rssd's check accepted the file synced (a start
        # skips the check only for a file its own version checked).
        (19, drop_version_20),
    ],
)
def test_a_one_column_migration_alone_builds_what_schema_sql_has_for_the_next_version(
    tmp_path: Path, step: int, drop_next: Callable[[sqlite3.Connection], None]
) -> None:
    """Today's schema without the next version's column, then the step alone: the schema
    a fresh database gets."""
    path = tmp_path / f"v{step}.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(schema_sql())
        drop_next(conn)
        conn.executescript(MIGRATIONS[step])
    assert same_schema_as_fresh(path, tmp_path / "fresh.sqlite3")


def test_migration_12_alone_builds_what_schema_sql_has_for_version_13(tmp_path: Path) -> None:
    """The step itself creates the search index, its queue, triggers and state, and the
    deliveries index; the posts already there are left for the backfill (last_id)."""
    path = tmp_path / "v12.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(schema_sql())
        drop_version_16(conn)
        drop_version_13(conn)
        conn.execute(
            "INSERT INTO content_sources (url, interval_minutes, timeout_seconds, created_at, "
            "updated_at) VALUES ('http://a.example/feed', 60, 30.0, ?, ?)",
            (NOW, NOW),
        )
        for n in range(3):
            conn.execute(
                "INSERT INTO posts (content_source_id, external_id, created_at, content_hash) "
                "VALUES (1, ?, ?, 'h')",
                (str(n), NOW),
            )
        conn.commit()
        conn.executescript(MIGRATIONS[12])
    fresh = tmp_path / "fresh.sqlite3"
    with closing(sqlite3.connect(fresh)) as conn:
        conn.executescript(schema_sql())
        drop_version_16(conn)
    normalized = {(t, n, " ".join(str(sql).split())) for t, n, sql in schema_objects(path)}
    expected = {(t, n, " ".join(str(sql).split())) for t, n, sql in schema_objects(fresh)}
    assert normalized == expected
    assert query(path, "SELECT next_id, last_id FROM search_backfill") == [(1, 3)]
    assert query(fresh, "SELECT next_id, last_id FROM search_backfill") == [(1, 0)]


def test_migration_14_alone_adds_what_schema_sql_has_for_version_15(tmp_path: Path) -> None:
    """The step itself adds the users' sender lease and pause columns."""
    path = tmp_path / "v14.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(schema_sql())
        drop_version_15(conn)
        conn.executescript(MIGRATIONS[14])
    fresh = tmp_path / "fresh.sqlite3"
    with closing(sqlite3.connect(fresh)) as conn:
        conn.executescript(schema_sql())
    info = "PRAGMA table_info(users)"
    assert {tuple(r[1:]) for r in query(path, info)} == {tuple(r[1:]) for r in query(fresh, info)}


def same_schema_as_fresh(path: Path, fresh: Path) -> bool:
    """Whether ``path`` has today's schema objects, each with the same SQL (whitespace aside:
    SQLite's DROP COLUMN, which takes a version's column out, leaves none before a ``)``)."""
    with closing(sqlite3.connect(fresh)) as conn:
        conn.executescript(schema_sql())

    def text(sql: object) -> str:
        return " ".join(str(sql).split()).replace(" )", ")")

    return {(t, n, text(sql)) for t, n, sql in schema_objects(path)} == {
        (t, n, text(sql)) for t, n, sql in schema_objects(fresh)
    }


def test_migration_15_alone_builds_what_schema_sql_has_for_version_16(tmp_path: Path) -> None:
    """The step itself replaces the insert trigger by one that leaves rssd's own inserts
    (search_direct) to rssd, and a post inserted by anyone else is still queued."""
    path = tmp_path / "v15.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(schema_sql())
        drop_version_16(conn)
        conn.executescript(MIGRATIONS[15])
        conn.executescript(MIGRATIONS[16])
    assert same_schema_as_fresh(path, tmp_path / "fresh.sqlite3")
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "INSERT INTO content_sources (url, interval_minutes, timeout_seconds, created_at, "
            "updated_at) VALUES ('http://a.example/feed', 60, 30.0, ?, ?)",
            (NOW, NOW),
        )
        insert = (
            "INSERT INTO posts (content_source_id, external_id, created_at, content_hash) "
            "VALUES (1, ?, ?, 'h')"
        )
        conn.execute(insert, ("by hand", NOW))
        conn.execute("INSERT INTO search_direct (id) VALUES (1)")
        conn.execute(insert, ("by rssd", NOW))
        assert conn.execute("SELECT post_id, unindex FROM search_queue").fetchall() == [(1, 0)]


async def test_a_version_17_database_gets_the_due_jobs_index_in_the_claims_order(
    tmp_path: Path,
) -> None:
    """Version 18: fetch_job_due is (not_before, id). A database of version 17 has it on
    not_before alone; the upgrade replaces it (the schema file's IF NOT EXISTS would
    not)."""
    path = tmp_path / "rssd.sqlite3"
    await (await open_database(path)).close()
    with closing(sqlite3.connect(path)) as conn:
        drop_version_20(conn)
        conn.execute("DROP INDEX fetch_job_due")
        conn.execute("CREATE INDEX fetch_job_due ON fetch_job (not_before) WHERE status = 'QUEUED'")
        conn.execute("PRAGMA user_version = 17")
        conn.commit()
    await (await open_database(path)).close()
    ((sql,),) = query(path, "SELECT sql FROM sqlite_master WHERE name = 'fetch_job_due'")
    assert "(not_before, id)" in str(sql), sql
    assert user_version(path) == SCHEMA_VERSION
