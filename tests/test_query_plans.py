"""The operator commands' queries use indexes (issue #16, item 4), checked with EXPLAIN
QUERY PLAN, never a timing: ``rssd posts`` reads the newest N off an index instead of
sorting every post (a full scan and a temp B-tree at 500,000 posts took 3.3 s), and the
schema-version-6 migration brings those indexes to an older database."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from rssd.repo import transitions
from rssd.repo.claims import _AFTER, due_page
from rssd.repo.dialect import SQLITE
from rssd.repo.migrations import MIGRATIONS, SCHEMA_VERSION
from rssd.repo.open import open_database
from rssd.repo.outbox import _PAGES
from rssd.repo.queries import _HEADS, PostFilter, posts_query
from tests.test_schema import drop_version_7

V6_INDEXES = ("posts_newest", "posts_source_newest", "posts_created")


def plan(database: Path, sql: str, params: dict[str, object] | None = None) -> list[str]:
    with closing(sqlite3.connect(database)) as conn:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params or {}).fetchall()
    return [str(row[3]) for row in rows]


@pytest.fixture
async def database(tmp_path: Path) -> Path:
    path = tmp_path / "rssd.sqlite3"
    await (await open_database(path)).close()
    return path


@pytest.mark.parametrize(
    ("wanted", "index"),
    [
        (PostFilter(limit=20), "posts_newest"),
        (PostFilter(source_id=3, limit=20), "posts_source_newest"),
        (PostFilter(since="2026-11-01T00:00:00.000Z", limit=20), "posts_newest"),
        (
            PostFilter(source_id=3, since="2026-11-01T00:00:00.000Z", limit=20),
            "posts_source_newest",
        ),
        (PostFilter(limit=None), "posts_newest"),
    ],
    ids=["newest", "source", "since", "source-since", "no-limit"],
)
def test_posts_are_read_in_order_off_an_index(
    database: Path, wanted: PostFilter, index: str
) -> None:
    sql, params = posts_query(wanted)
    steps = plan(database, sql, params)
    text = "\n".join(steps)
    assert any(step.startswith("SCAN p USING INDEX " + index) or f"p USING INDEX {index}" in step
               for step in steps), text  # fmt: skip
    assert "TEMP B-TREE" not in text, text  # no sort of every matching post
    assert "SCAN posts" not in text and "SCAN p\n" not in text + "\n", text


@pytest.mark.parametrize(
    ("wanted", "search"),
    [
        (
            PostFilter(stored_since="2026-11-01T00:00:00.000Z", limit=20),
            "SEARCH p USING INDEX posts_created (created_at>?)",
        ),
        (PostFilter(after_id=1000, limit=20), "SEARCH p USING INTEGER PRIMARY KEY (rowid>?)"),
    ],
    ids=["stored-since", "new"],
)
def test_posts_by_storing_time_are_a_range_not_a_walk_of_every_post(
    database: Path, wanted: PostFilter, search: str
) -> None:
    """Few posts match these as a rule: the range finds them (then they are sorted); a walk
    down the sort-order index would read every post when none matches."""
    sql, params = posts_query(wanted)
    steps = plan(database, sql, params)
    assert search in steps, steps
    assert not any("posts_newest" in step for step in steps), steps


def test_status_finds_each_sources_jobs_and_posts_through_indexes(database: Path) -> None:
    text = "\n".join(plan(database, _HEADS))
    assert "fetch_job_source_latest" in text, text
    assert "SCAN fetch_job" not in text and "SCAN f " not in text, text
    assert "SCAN p" not in text and "SCAN posts" not in text, text
    # The one scan is of the sources themselves (every source is a row of the output).
    assert [line for line in text.splitlines() if line.startswith("SCAN")] == [
        "SCAN s USING COVERING INDEX sqlite_autoindex_content_sources_1"
    ], text


def test_a_changed_feeds_search_for_pages_reads_the_pages_only(database: Path) -> None:
    """Every changed feed asks which pages lead to it: a walk of the pages' index, not a
    scan of every source (schema version 19)."""
    steps = plan(database, _PAGES, {"source_id": 1})
    assert steps[0] == "SCAN c USING INDEX content_sources_pages", steps
    assert not any(step == "SCAN c" for step in steps), steps


async def _open_close(path: Path) -> None:
    await (await open_database(path)).close()


def _as_version_5(path: Path) -> None:
    """Today's schema minus what versions 6 and 7 changed, with a post in it."""
    with closing(sqlite3.connect(path)) as conn:
        drop_version_7(conn)
        for name in V6_INDEXES:
            conn.execute(f"DROP INDEX {name}")
        conn.execute("CREATE INDEX posts_published ON posts (published_at)")
        conn.execute(
            "INSERT INTO content_sources (id, url, interval_minutes, timeout_seconds, "
            "created_at, updated_at) VALUES (1, 'http://a.example/', 60, 30.0, 'x', 'x')"
        )
        conn.execute(
            "INSERT INTO posts (content_source_id, external_id, created_at, content_hash) "
            "VALUES (1, 'g', '2026-11-01T00:00:00.000Z', 'h')"
        )
        conn.execute("PRAGMA user_version = 5")
        conn.commit()


def _objects(path: Path) -> set[tuple[str, str]]:
    with closing(sqlite3.connect(path)) as conn:
        return set(conn.execute("SELECT type, name FROM sqlite_master").fetchall())


def test_the_version_6_step_adds_the_indexes(database: Path) -> None:
    _as_version_5(database)
    assert SCHEMA_VERSION >= 6
    with closing(sqlite3.connect(database)) as conn:
        conn.executescript(MIGRATIONS[5])
    assert {("index", name) for name in V6_INDEXES} <= _objects(database)
    assert ("index", "posts_published") not in _objects(database)


async def test_a_version_5_database_is_migrated_with_its_posts(
    database: Path, tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh.sqlite3"
    await _open_close(fresh)
    _as_version_5(database)
    await _open_close(database)
    with closing(sqlite3.connect(database)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert conn.execute("SELECT external_id FROM posts").fetchall() == [("g",)]
    assert _objects(database) == _objects(fresh)
    sql, params = posts_query(PostFilter(limit=20))
    assert "posts_newest" in "\n".join(plan(database, sql, params))


@pytest.mark.parametrize("later_page", [False, True], ids=["first", "next"])
def test_a_claim_reads_its_page_of_due_jobs_off_the_index(database: Path, later_page: bool) -> None:
    """Claims take due jobs in (not_before, id) order: off ``fetch_job_due``, with no sort
    of every due job. (On SQLite an index ends with the rowid, the id, anyway; PostgreSQL's
    needed the id added: tests/test_schema_pg.py.)"""
    since = _AFTER.format(read=SQLITE.in_json_int("read")) if later_page else ""
    params = {"now": "2026-12-01T00:00:00.000Z", "page": 200, "after": "x", "read": "[]"}
    text = "\n".join(plan(database, due_page(SQLITE, since), params))
    assert "USING INDEX fetch_job_due" in text, text
    assert "TEMP B-TREE" not in text, text


@pytest.mark.parametrize("everything", [True, False], ids=["restart", "expired-leases"])
def test_taking_back_ongoing_jobs_reads_them_off_a_partial_index(
    database: Path, everything: bool
) -> None:
    """The take-back (every start on SQLite; expired leases on PostgreSQL) finds the few
    ONGOING jobs off an index on them, not by a walk of every job kept (90 days of them by
    default): with ``status IN ('ONGOING')`` it was a full scan."""
    params: dict[str, object] = {"now": "2026-12-01T00:00:00.000Z", "message": "m"}
    text = "\n".join(plan(database, transitions.take_back(SQLITE, everything=everything), params))
    assert "USING INDEX" in text, text
    assert "SCAN fetch_job\n" not in text + "\n", text
