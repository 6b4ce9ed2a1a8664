"""Read-only SQL for the operator commands: what ``rssd status``, ``posts`` and ``prune`` show.

These run on read-only connections beside a running daemon, so nothing here writes. Each
multi-statement read runs in one read transaction: a consistent snapshot under WAL, even
while the daemon commits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from rssd.models.dto import FetchJob, Source
from rssd.repo.db import Database, Tx
from rssd.repo.jobs import PRUNABLE

T = TypeVar("T")

_SOURCE_COLUMNS = (
    "id, url, name, interval_minutes, timeout_seconds, enabled, created_at, updated_at, "
    "feed_title, feed_url, category"
)
_JOB_COLUMNS = (
    "id, content_source_id, status, queued_at, started_at, ended_at, error_code, "
    "error_message, posts_count, http_status, etag, last_modified, content_hash, bytes, final_url"
)

# Per source: its newest job (maybe still active), newest finished job, newest success,
# newest real failure (``interrupted`` is the daemon's doing, not the feed's), the run of
# failures since the last success (as rssd.repo.jobs.latest_jobs counts it), and its posts.
# Every lookup walks the (content_source_id, id) index backwards.
_HEADS = """
WITH heads AS (
    SELECT s.id AS source_id,
        (SELECT id FROM fetch_job WHERE content_source_id = s.id
         ORDER BY id DESC LIMIT 1) AS latest_id,
        (SELECT id FROM fetch_job WHERE content_source_id = s.id
           AND status IN ('COMPLETED', 'FAILED') ORDER BY id DESC LIMIT 1) AS finished_id,
        (SELECT id FROM fetch_job WHERE content_source_id = s.id AND status = 'COMPLETED'
         ORDER BY id DESC LIMIT 1) AS ok_id,
        (SELECT id FROM fetch_job WHERE content_source_id = s.id AND status = 'FAILED'
           AND error_code != 'interrupted' ORDER BY id DESC LIMIT 1) AS error_id
    FROM content_sources s
)
SELECT h.source_id, h.latest_id, h.finished_id, h.ok_id, h.error_id,
    (SELECT count(*) FROM fetch_job f
     WHERE f.content_source_id = h.source_id AND f.id > coalesce(h.ok_id, 0)
       AND f.status = 'FAILED' AND f.error_code != 'interrupted') AS failures,
    (SELECT count(*) FROM posts p WHERE p.content_source_id = h.source_id) AS posts_total
FROM heads h
"""

_POSTS = """
SELECT p.id, p.content_source_id AS source_id,
    coalesce(s.name, s.feed_title) AS source_name, s.url AS source_url,
    p.external_id, p.title, p.url, p.author, p.summary, p.content, p.published_at,
    p.updated_at, p.created_at
FROM posts p JOIN content_sources s ON s.id = p.content_source_id
WHERE (:source_id IS NULL OR p.content_source_id = :source_id)
  AND (:category IS NULL OR s.category = :category COLLATE NOCASE
       OR s.category LIKE :category_like || ' / %' ESCAPE '\\')
  AND (:since IS NULL OR coalesce(p.published_at, p.created_at) >= :since)
ORDER BY coalesce(p.published_at, p.created_at) DESC, p.id DESC
LIMIT :limit
"""

_PRUNABLE_JOBS = f"SELECT count(*) FROM fetch_job {PRUNABLE}"


@dataclass(frozen=True)
class SourceStatus:
    """One source as ``rssd status`` sees it; every field comes from the database."""

    source: Source
    latest: FetchJob | None  # the newest job, possibly QUEUED/ONGOING right now
    finished: FetchJob | None  # the newest COMPLETED or FAILED job
    last_success: FetchJob | None
    last_error: FetchJob | None  # the newest FAILED job, ``interrupted`` not counted
    failures: int  # FAILED jobs since the last COMPLETED one, ``interrupted`` not counted
    posts_total: int


@dataclass(frozen=True)
class PostRow:
    """A post with its source's name and URL, newest first in ``rssd posts``."""

    id: int
    source_id: int
    source_name: str | None
    source_url: str
    external_id: str
    title: str | None
    url: str | None
    author: str | None
    summary: str | None
    content: str | None
    published_at: str | None
    updated_at: str | None
    created_at: str


async def _snapshot(db: Database, work: Callable[[Tx], Awaitable[T]]) -> T:
    """Run ``work`` inside one read transaction, so its statements see one state."""

    async def run(tx: Tx) -> T:
        await tx.execute("BEGIN")
        try:
            return await work(tx)
        finally:
            await tx.execute("ROLLBACK")

    return await db.read(run)


def _source(row: sqlite3.Row) -> Source:
    return Source.model_validate({**dict(row), "enabled": bool(row["enabled"])})


async def source_statuses(db: Database) -> list[SourceStatus]:
    """Every source with its latest jobs, failure run and post count, ordered by id."""

    async def work(tx: Tx) -> list[SourceStatus]:
        sources = {
            row["id"]: _source(row)
            for row in await tx.fetchall(f"SELECT {_SOURCE_COLUMNS} FROM content_sources")
        }
        heads = await tx.fetchall(_HEADS)
        wanted = {
            row[key]
            for row in heads
            for key in ("latest_id", "finished_id", "ok_id", "error_id")
            if row[key] is not None
        }
        rows = await tx.fetchall(
            f"SELECT {_JOB_COLUMNS} FROM fetch_job WHERE id IN (SELECT value FROM json_each(:ids))",
            {"ids": json.dumps(sorted(wanted))},
        )
        jobs = {row["id"]: FetchJob.model_validate(dict(row)) for row in rows}
        return [
            SourceStatus(
                source=sources[head["source_id"]],
                latest=jobs.get(head["latest_id"]),
                finished=jobs.get(head["finished_id"]),
                last_success=jobs.get(head["ok_id"]),
                last_error=jobs.get(head["error_id"]),
                failures=head["failures"],
                posts_total=head["posts_total"],
            )
            for head in sorted(heads, key=lambda h: int(h["source_id"]))
        ]

    return await _snapshot(db, work)


async def newest_posts(
    db: Database,
    *,
    source_id: int | None,
    since: str | None,
    limit: int | None,
    category: str | None = None,
) -> list[PostRow]:
    """Posts newest first by publication time (else the time rssd stored them);
    ``category``: only feeds in that folder or below it (normalized, as in config)."""
    # LIKE's wildcards in a folder name are plain characters.
    like = None
    if category is not None:
        like = category.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = await db.fetchall(
        _POSTS,
        {
            "source_id": source_id,
            "since": since,
            "limit": -1 if limit is None else limit,
            "category": category,
            "category_like": like,
        },
    )
    return [PostRow(**dict(row)) for row in rows]


async def count_prunable_jobs(db: Database, older_than: str) -> int:
    """How many jobs ``FetchJobRepo.prune(older_than)`` would delete now."""
    row = await db.fetchone(_PRUNABLE_JOBS, {"cutoff": older_than})
    return int(row[0]) if row else 0


async def schema_version(db: Database) -> int:
    """``PRAGMA user_version``: a read-only reader cannot migrate, so it checks instead."""
    row = await db.fetchone("PRAGMA user_version")
    return int(row[0]) if row else 0
