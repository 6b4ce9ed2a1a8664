"""rssd copy-database: a SQLite database moved into an empty PostgreSQL one, and the
operator commands reading the copy as they read the original."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from rssd.repo.claims import ClaimRepo
from rssd.repo.copy import TABLES
from rssd.repo.migrations import schema_sql
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer
from tests.support.commands import cli, populated
from tests.support.postgres import fresh_database


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


def pg_config(sqlite_config: Path, url: str) -> Path:
    """The same config.toml, pointed at PostgreSQL."""
    lines = sqlite_config.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith("database = ")]
    assert len(kept) == len(lines) - 1
    copy = sqlite_config.with_name("config-pg.toml")
    copy.write_text(f'database = "{url}"\n' + "".join(kept))
    return copy


def comparable(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The sources, without the one field computed from the time of the call: a feed never
    fetched is due "now"."""
    return sorted(
        (
            {k: v for k, v in source.items() if k != "next_due_at"}
            if source["state"] == "never_fetched"
            else source
            for source in status["sources"]
        ),
        key=lambda source: str(source["url"]),
    )


async def test_copy_then_status_and_posts_read_the_same(
    feed_server: FeedServer, tmp_path: Path, pg_url: str
) -> None:
    world = await populated(feed_server, tmp_path)
    # A scheduled job too: the copy carries the schedule.
    db = await open_database(world.database)
    try:
        source = await SourceRepo(db).get_by_url(world.urls["ok"])
        assert source is not None
        assert await ClaimRepo(db, "").queue_missing({source.id: "2030-01-01T00:00:00.000Z"})
    finally:
        await db.close()

    copied = await cli("copy-database", "-c", world.config, "--to", pg_url)
    assert copied.code == 0, copied.err
    assert "MISMATCH" not in copied.out
    assert "content_sources" in copied.out and "posts" in copied.out

    target = pg_config(world.config, pg_url)
    for command in (("status", "--json"), ("posts", "--json", "--limit", "0")):
        original = await cli(*command, "-c", world.config)
        moved = await cli(*command, "-c", target)
        assert original.code == moved.code == 0, (original.err, moved.err)
        if command[0] == "status":
            assert comparable(moved.json()) == comparable(original.json())
        else:
            assert moved.json_lines() == original.json_lines()
            assert len(moved.json_lines()) == 5

    again = await cli("copy-database", "-c", world.config, "--to", pg_url)
    assert again.code == 1
    assert "is not empty" in again.err

    # The copy is a working database: new rows get ids after the copied ones.
    pg = await open_database(pg_url)
    try:
        row = await pg.fetchone(
            "INSERT INTO content_sources (url, interval_minutes, timeout_seconds, created_at, "
            "updated_at) VALUES ('http://late.example/', 60, 30, now(), now()) RETURNING id"
        )
        assert row is not None
        assert row[0] > len(world.urls)
    finally:
        await pg.close()


@pytest.mark.parametrize(
    "to",
    [
        "postgresql://rssd:{secret}@127.0.0.1:1/x",
        "postgresql://rssd@127.0.0.1:1/x?password={secret}",
    ],
    ids=["userinfo", "parameter"],
)
async def test_the_password_never_shows(tmp_path: Path, feed_server: FeedServer, to: str) -> None:
    world = await populated(feed_server, tmp_path)
    secret = "s3cret-pw"
    result = await cli("copy-database", "-c", world.config, "--to", to.format(secret=secret))
    assert result.code == 1
    assert "cannot connect" in result.err
    assert secret not in result.err + result.out
    assert "***" in result.err


async def test_a_copied_job_left_ongoing_without_a_lease_is_taken_back(
    feed_server: FeedServer, tmp_path: Path, pg_url: str
) -> None:
    """A job ONGOING in the SQLite file with no lease (an rssd from before leases, killed
    mid-fetch) would block its feed on PostgreSQL, where no start-up recovery runs: the
    first take-back there fails it as ``interrupted`` and queues the feed again."""
    world = await populated(feed_server, tmp_path)
    db = await open_database(world.database)
    try:
        source = await SourceRepo(db).get_by_url(world.urls["ok"])
        assert source is not None
        rows = await db.write_one(
            "INSERT INTO fetch_job (content_source_id, status, queued_at, started_at) "
            "VALUES (:id, 'ONGOING', :t, :t) RETURNING id",
            {"id": source.id, "t": "2026-01-01T00:00:00.000Z"},
        )
        stuck = int(rows[0][0])
    finally:
        await db.close()
    copied = await cli("copy-database", "-c", world.config, "--to", pg_url)
    assert copied.code == 0, copied.err

    pg = await open_database(pg_url)
    try:
        assert await ClaimRepo(pg, "d1").take_back() == [stuck]
        rows = await pg.fetchall(
            "SELECT status, error_code FROM fetch_job WHERE content_source_id = :id "
            "AND id >= :stuck ORDER BY id",
            {"id": source.id, "stuck": stuck},
        )
        assert [(row[0], row[1]) for row in rows] == [
            ("FAILED", "interrupted"),
            ("QUEUED", None),
        ]
    finally:
        await pg.close()


async def test_with_a_password_in_the_url_it_suggests_no_literal_mask(
    feed_server: FeedServer, tmp_path: Path, pg_url: str
) -> None:
    """The server trusts the test's connections: any password gets in. The suggested
    ``database =`` line leaves the password out (it belongs in a passfile), never ``***``."""
    world = await populated(feed_server, tmp_path)
    with_password = pg_url.replace("postgresql://postgres@", "postgresql://postgres:hunter2@")
    assert with_password != pg_url
    copied = await cli("copy-database", "-c", world.config, "--to", with_password)
    assert copied.code == 0, copied.err
    suggestion = copied.out.splitlines()[-1]
    assert f'set database = "{pg_url}"' in suggestion
    assert "hunter2" not in copied.out + copied.err
    assert "(1 rows)" not in copied.err and " 1 rows" not in copied.err


#: Tables copy-database leaves out on purpose: live processes and per-host timing (the
#: target's daemons make their own), the search index (rebuilt on the target) and
#: search_direct (a marker that holds a row only inside one of rssd's own inserts).
NOT_COPIED = {"daemons", "hosts", "search_queue", "search_backfill", "search_direct"}


def test_every_table_and_column_of_the_schema_is_copied() -> None:
    """A column added to schema.sql and forgotten in repo/copy.py would be lost silently."""
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.executescript(schema_sql())
        tables = {
            str(name): {str(row[1]) for row in conn.execute(f"PRAGMA table_info('{name}')")}
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'posts_fts%'"
            )
        }
    assert {name: set(columns) for name, columns in TABLES.items()} == {
        name: columns for name, columns in tables.items() if name not in NOT_COPIED
    }
