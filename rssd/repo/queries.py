"""Read-only SQL for the operator commands: what ``rssd status`` and ``rssd posts`` show.

These run on read-only connections beside a running daemon, so nothing here writes. Each
multi-statement read runs in one read transaction: a consistent snapshot under WAL, even
while the daemon commits.
"""

from __future__ import annotations

import json

from msgspec import Struct

from rssd.models.dto import FetchJob, Source
from rssd.repo.db import Database, Tx
from rssd.repo.dialect import SQLITE, Dialect
from rssd.repo.fragments import NO_LIMIT, failure_run
from rssd.repo.rows import JOB_COLUMNS, SOURCE_COLUMNS, job_from, source_from

# Per source: its one active job (QUEUED: the plan; ONGOING: the attempt running now),
# its newest finished job (the last attempt: what ``last_attempt`` means), newest success,
# newest real failure (``interrupted`` is the daemon's doing, not the feed's), the run of
# failures since the last success, and its posts.
# Every lookup walks the (content_source_id, id) index backwards.
_HEADS = """
WITH heads AS (
    SELECT s.id AS source_id,
        (SELECT id FROM fetch_job WHERE content_source_id = s.id
           AND status IN ('QUEUED', 'ONGOING') ORDER BY id DESC LIMIT 1) AS active_id,
        (SELECT id FROM fetch_job WHERE content_source_id = s.id
           AND status IN ('COMPLETED', 'FAILED') ORDER BY id DESC LIMIT 1) AS finished_id,
        (SELECT id FROM fetch_job WHERE content_source_id = s.id AND status = 'COMPLETED'
         ORDER BY id DESC LIMIT 1) AS ok_id,
        (SELECT id FROM fetch_job WHERE content_source_id = s.id AND status = 'FAILED'
           AND error_code != 'interrupted' ORDER BY id DESC LIMIT 1) AS error_id
    FROM content_sources s
)
SELECT h.source_id, h.active_id, h.finished_id, h.ok_id, h.error_id,
    {failure_run} AS failures,
    (SELECT count(*) FROM posts p WHERE p.content_source_id = h.source_id) AS posts_total
FROM heads h
""".format(failure_run=failure_run("h.source_id", "h.ok_id"))

#: A ``PostRow``'s columns, from ``posts p`` joined with its ``content_sources s``.
POST_COLUMNS = """p.id, p.content_source_id AS source_id,
    coalesce(s.name, s.feed_title) AS source_name, s.url AS source_url,
    p.external_id, p.title, p.url, p.author, p.summary, p.content, p.published_at,
    p.updated_at, p.created_at"""

# Newest first by publication time, else the time rssd stored the post: the same expression
# as the posts_newest and posts_source_newest indexes (schema version 6), so the newest N
# are read off an index instead of sorting every post. The filters are fixed fragments
# joined with AND (never a ``:x IS NULL OR ...``, which keeps SQLite from using an index).
_POSTS = f"""
SELECT {POST_COLUMNS}
FROM posts p JOIN content_sources s ON s.id = p.content_source_id
WHERE {{where}}
ORDER BY {{sort_key}} DESC, p.id DESC
LIMIT :limit
"""
_SORT_KEY = "coalesce(p.published_at, p.created_at)"
_POST_FILTERS = {
    "source_id": "p.content_source_id = :source_id",
    # A folder and the folders below it (normalized, as in config).
    "category": (
        "(lower(s.category) = lower(:category)"
        " OR lower(s.category) LIKE lower(:category_like) || ' / %' ESCAPE '\\')"
    ),
    "since": "coalesce(p.published_at, p.created_at) >= :since",
    "stored_since": "p.created_at >= :stored_since",
    "after_id": "p.id > :after_id",
    "post_id": "p.id = :post_id",
}


class SourceStatus(Struct, frozen=True):
    """One source as ``rssd status`` sees it; every field comes from the database."""

    source: Source
    active: FetchJob | None  # the QUEUED job (the plan) or the ONGOING one (running now)
    finished: FetchJob | None  # the newest COMPLETED or FAILED job: the last attempt
    last_success: FetchJob | None
    last_error: FetchJob | None  # the newest FAILED job, ``interrupted`` not counted
    failures: int  # FAILED jobs since the last COMPLETED one, ``interrupted`` not counted
    posts_total: int


class PostRow(Struct, frozen=True):
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


async def source_statuses(db: Database) -> list[SourceStatus]:
    """Every source with its latest jobs, failure run and post count, ordered by id."""

    async def work(tx: Tx) -> list[SourceStatus]:
        sources = {
            row["id"]: source_from(row)
            for row in await tx.fetchall(f"SELECT {SOURCE_COLUMNS} FROM content_sources")
        }
        heads = await tx.fetchall(_HEADS)
        wanted = {
            row[key]
            for row in heads
            for key in ("active_id", "finished_id", "ok_id", "error_id")
            if row[key] is not None
        }
        rows = await tx.fetchall(
            f"SELECT {JOB_COLUMNS} FROM fetch_job WHERE id IN {tx.dialect.in_json_int('ids')}",
            {"ids": json.dumps(sorted(wanted))},
        )
        jobs = {row["id"]: job_from(row) for row in rows}
        return [
            SourceStatus(
                source=sources[head["source_id"]],
                active=jobs.get(head["active_id"]),
                finished=jobs.get(head["finished_id"]),
                last_success=jobs.get(head["ok_id"]),
                last_error=jobs.get(head["error_id"]),
                failures=head["failures"],
                posts_total=head["posts_total"],
            )
            for head in sorted(heads, key=lambda h: int(h["source_id"]))
        ]

    return await db.snapshot(work)


class PostFilter(Struct, frozen=True):
    """Which posts ``rssd posts`` lists; None means "any"."""

    source_id: int | None = None
    since: str | None = None  # published (else stored) at or after
    stored_since: str | None = None  # stored by rssd at or after
    after_id: int | None = None  # stored after the post with this id (``--new``)
    category: str | None = None  # feeds in this folder or below it
    post_id: int | None = None  # this one post
    limit: int | None = None


def post_filters(wanted: PostFilter) -> tuple[str, dict[str, object]]:
    """The WHERE condition (over ``posts p`` and ``content_sources s``) and parameters of
    ``wanted``, ``:limit`` included; "TRUE" when it selects every post."""
    params: dict[str, object] = {"limit": NO_LIMIT if wanted.limit is None else wanted.limit}
    clauses = []
    for name, clause in _POST_FILTERS.items():
        value = getattr(wanted, name)
        if value is not None:
            clauses.append(clause)
            params[name] = value
    if wanted.category is not None:  # LIKE's wildcards in a folder name are plain characters
        escaped = wanted.category.replace("\\", "\\\\").replace("%", "\\%")
        params["category_like"] = escaped.replace("_", "\\_")
    return " AND ".join(clauses) or "TRUE", params


def posts_query(wanted: PostFilter, dialect: Dialect = SQLITE) -> tuple[str, dict[str, object]]:
    """The statement and parameters for ``wanted`` (also what the query-plan test reads)."""
    where, params = post_filters(wanted)
    by_storing_time = wanted.stored_since is not None or wanted.after_id is not None
    # Selecting by storing time (--stored-since, --new) usually matches a few recent posts:
    # the range on created_at / id finds them, then they are sorted. Left to itself SQLite
    # walks the sort-order index instead and, when nothing matches, reads every post to find
    # that out; the dialect's ``no_index`` keeps it off that index.
    sort_key = f"{dialect.no_index}{_SORT_KEY}" if by_storing_time else _SORT_KEY
    return _POSTS.format(where=where, sort_key=sort_key), params


async def newest_posts(db: Database, wanted: PostFilter) -> list[PostRow]:
    """Posts newest first by publication time (else the time rssd stored them)."""
    sql, params = posts_query(wanted, db.dialect)
    rows = await db.fetchall(sql, params)
    return [PostRow(**dict(row)) for row in rows]


async def newest_post_id(db: Database) -> int:
    """The highest post id: where the next ``rssd posts --new`` starts."""
    row = await db.fetchone("SELECT max(id) FROM posts")
    return int(row[0]) if row and row[0] is not None else 0


async def schema_version(db: Database) -> int:
    """The database's schema version: a read-only reader cannot migrate, so it checks."""
    return await db.schema_version()
