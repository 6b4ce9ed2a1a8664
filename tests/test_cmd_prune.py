"""``rssd prune``: retention of fetch jobs and posts, applied now, on a real database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from rssd.clock import to_iso
from rssd.repo.open import open_database
from tests.conftest import FeedServer
from tests.support.commands import cli, dated_rss, run_once_from
from tests.support.config import write_config

pytestmark = pytest.mark.both_backends

OLD = to_iso(datetime.now(UTC) - timedelta(days=200))


async def execute(target: Path | str, *statements: tuple[str, dict[str, object]]) -> None:
    db = await open_database(target)
    try:
        for sql, params in statements:
            await db.write_one(sql, params)
    finally:
        await db.close()


async def query(target: Path | str, sql: str) -> list[tuple[object, ...]]:
    db = await open_database(target)
    try:
        return [tuple(row) for row in await db.fetchall(sql)]
    finally:
        await db.close()


async def three_runs(
    feed_server: FeedServer, tmp_path: Path, target: Path | str, **settings: object
) -> Path:
    """Three real runs: "ok" always succeeds, "failing" never does, "flaky" succeeds once
    then fails; then every job is made 200 days old."""
    calls = {"flaky": 0}

    async def flaky(request: web.Request) -> web.Response:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            return web.Response(text=dated_rss(["flaky"], name="flaky"))
        return web.Response(status=503, text="down")

    feeds: list[dict[str, object]] = [
        {"url": feed_server.static("/ok", dated_rss(["a", "b", "c"], name="ok"))},
        {"url": feed_server.static("/failing", "no", status=500, content_type="text/plain")},
        {"url": feed_server.route("/flaky", flaky)},
    ]
    config = write_config(tmp_path / "config.toml", feeds, database=str(target), **settings)
    for _ in range(3):
        await run_once_from(config)
    await execute(
        target,
        (
            "UPDATE fetch_job SET queued_at = :old, started_at = :old, ended_at = :old",
            {"old": OLD},
        ),
    )
    return config


async def jobs(database: Path | str) -> list[tuple[int, int, str]]:
    rows = await query(database, "SELECT id, content_source_id, status FROM fetch_job ORDER BY id")
    return [(int(str(i)), int(str(s)), str(status)) for i, s, status in rows]


async def test_dry_run_counts_exactly_what_prune_removes(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    config = await three_runs(feed_server, tmp_path, db_target)
    database = db_target
    before = await jobs(database)
    assert len(before) == 9

    dry = await cli("prune", "--dry-run", "-c", config)
    assert dry.code == 0, dry.err
    assert dry.out.startswith("fetch jobs: would remove 5 that ended before ")
    assert "posts:      kept: keep_posts_days is not set" in dry.out
    assert await jobs(database) == before

    done = await cli("prune", "-c", config)
    assert done.code == 0, done.err
    assert done.out.startswith("fetch jobs: removed 5 that ended before ")
    kept = await jobs(database)
    # Each source keeps its latest job; "flaky" also its latest success (its validators).
    latest = {source: max(i for i, s, _ in before if s == source) for source in (1, 2, 3)}
    flaky_success = max(i for i, s, status in before if s == 3 and status == "COMPLETED")
    assert {i for i, _, _ in kept} == {*latest.values(), flaky_success}

    again = await cli("prune", "-c", config)
    assert again.out.startswith("fetch jobs: removed 0 ")


async def test_posts_older_than_keep_posts_days(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    config = await three_runs(feed_server, tmp_path, db_target, keep_posts_days=180)
    database = db_target
    recent = to_iso(datetime.now(UTC) - timedelta(hours=1))
    # a: stored and published long ago -> removed; b: stored long ago, published
    # recently -> kept; c: published long ago but stored just now -> kept (for now).
    await execute(
        database,
        (
            "UPDATE posts SET created_at = :old, published_at = :old WHERE title = 'a'",
            {"old": OLD},
        ),
        (
            "UPDATE posts SET created_at = :old, published_at = :new WHERE title = 'b'",
            {"old": OLD, "new": recent},
        ),
        ("UPDATE posts SET published_at = :old WHERE title = 'c'", {"old": OLD}),
        (
            "UPDATE posts SET created_at = :old, published_at = NULL WHERE title = 'flaky'",
            {"old": OLD},
        ),
    )

    dry = await cli("prune", "--dry-run", "-c", config)
    assert "posts:      would remove 2 older than " in dry.out
    assert "(keep_posts_days = 180)" in dry.out

    done = await cli("prune", "-c", config)
    assert done.code == 0, done.err
    assert "posts:      removed 2 older than " in done.out
    titles = {row[0] for row in await query(database, "SELECT title FROM posts")}
    assert titles == {"b", "c"}


async def test_vacuum_reports_the_size(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    config = await three_runs(feed_server, tmp_path, db_target)
    result = await cli("prune", "--vacuum", "-c", config)
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1].startswith("vacuum:     ")
    size = r"\d+(\.\d)? [KMG]B"
    assert re.fullmatch(rf"vacuum: +{size} -> {size}", result.out.splitlines()[-1])
    dry = await cli("prune", "--vacuum", "--dry-run", "-c", config)
    assert dry.out.splitlines()[-1] == "vacuum:     not run (--dry-run)"
