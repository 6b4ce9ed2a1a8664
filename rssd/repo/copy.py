"""Copy every row of one database into another (``rssd copy-database``): SQLite -> PostgreSQL.

Users outgrowing one machine start from what they have. The tables are copied parent first
(sources, jobs, posts, the parse cache, the synced config, users, subscriptions, the webhook
outbox, the stories told and skipped, the posts waiting for a digest), ids kept, in pages,
all read in one snapshot of the source; then the target's id sequences are moved past the
copied ids.
The daemons table is not copied: it lists processes of the old database; nor is the
search index, which the target's daemon builds again (rssd/repo/search.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rssd.repo.db import Database, Tx

#: Table -> columns, parents before children (foreign keys hold at every commit).
TABLES: dict[str, tuple[str, ...]] = {
    "content_sources": (
        "id", "url", "name", "interval_minutes", "timeout_seconds", "enabled", "created_at",
        "updated_at", "feed_title", "feed_url", "category", "interval_fixed",
        "min_interval_minutes", "max_interval_minutes",
    ),
    "fetch_job": (
        "id", "content_source_id", "status", "queued_at", "started_at", "ended_at",
        "error_code", "error_message", "posts_count", "http_status", "etag", "last_modified",
        "content_hash", "bytes", "final_url", "not_before", "failures", "fetch_url",
        "moved_seen", "claimed_by", "lease_expires_at", "host", "host_slot",
        "interval_seconds", "interval_reason",
    ),
    "posts": (
        "id", "content_source_id", "fetch_job_id", "external_id", "title", "url", "author",
        "summary", "content", "published_at", "updated_at", "created_at", "content_hash",
        "tags", "enclosures",
    ),
    "seen_items": ("content_source_id", "digests"),
    "users": (
        "id", "name", "webhook_url", "enabled", "keep", "block", "config_digest",
        "disabled_reason", "disabled_at", "failing_since", "last_success_at", "last_error_at",
        "last_error", "created_at", "updated_at", "format", "include_content", "dedupe_days",
        "digest", "timezone", "sender", "sender_until", "paused_until",
    ),
    "subscriptions": ("user_id", "content_source_id", "primed", "created_at"),
    "deliveries": (
        "id", "user_id", "content_source_id", "fetch_job_id", "posts_count", "body", "status",
        "attempts", "next_attempt_at", "last_attempt_at", "last_http_status", "last_error",
        "created_at", "updated_at", "earlier_attempts",
    ),
    "announced": ("user_id", "story", "content_source_id", "post_id", "announced_at"),
    "skipped_posts": (
        "user_id", "post_id", "content_source_id", "duplicate_of", "story", "skipped_at",
    ),
    "digest_items": ("user_id", "post_id", "content_source_id", "queued_at"),
    "config_sync": (
        "id", "config_hash", "config_mtime", "synced_at", "synced_by", "checked_by"
    ),
    "config_versions": ("config_hash", "digests", "first_synced_at"),
}  # fmt: skip

#: Tables whose ids come from an identity sequence on PostgreSQL.
_SEQUENCED = ("content_sources", "fetch_job", "posts", "users")
#: Each table's order for paging (its primary key): the snapshot keeps OFFSET stable.
_ORDER = {
    "subscriptions": "user_id, content_source_id",
    "announced": "user_id, story",
    "skipped_posts": "user_id, post_id",
    "digest_items": "user_id, post_id",
}
PAGE = 1000


async def counts(db: Database) -> dict[str, int]:
    """Rows per copied table."""

    async def work(tx: Tx) -> dict[str, int]:
        out = {}
        for table in TABLES:
            row = await tx.fetchone(f"SELECT count(*) FROM {table}")
            out[table] = int(row[0]) if row else 0
        return out

    return await db.snapshot(work)


async def copy_rows(
    source: Database, target: Database, progress: Callable[[str, int], Awaitable[None]]
) -> None:
    """Copy every table of ``source`` into ``target`` (empty, same schema version)."""

    async def work(read: Tx) -> None:
        for table, columns in TABLES.items():
            names = ", ".join(columns)
            insert = (
                f"INSERT INTO {table} ({names}) VALUES "
                f"({', '.join(':' + column for column in columns)})"
            )
            order = _ORDER.get(table, columns[0])
            copied = 0
            while True:
                rows = await read.fetchall(
                    f"SELECT {names} FROM {table} ORDER BY {order} LIMIT :page OFFSET :skip",
                    {"page": PAGE, "skip": copied},
                )
                if not rows:
                    break
                batch = [{column: row[column] for column in columns} for row in rows]
                await _insert(target, insert, batch)
                copied += len(rows)
                await progress(table, copied)
        if target.dialect.reset_sequence:
            for table in _SEQUENCED:
                await target.write_one(target.dialect.reset_sequence.format(table=table))
        # The copied posts come without their search document: the target's daemon
        # builds it in the background, as after the migration that added it.
        await target.write_one(
            "UPDATE search_backfill SET next_id = 1, "
            "last_id = (SELECT coalesce(max(id), 0) FROM posts) WHERE id = 1"
        )

    await source.snapshot(work)


async def _insert(target: Database, sql: str, batch: list[dict[str, object]]) -> None:
    await target.write(lambda tx: tx.executemany(sql, batch))
