"""Digests in the database: posts waiting for their user's period (``digest_items``), and
closing a period: its rows deleted and the digest's messages written, in one transaction.

The rows are deleted with ``RETURNING`` before the messages are planned, so two daemons
closing the same user's period at once (PostgreSQL) cannot both send it: the second
deletes nothing and writes nothing. A crash before the commit leaves the posts waiting.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime

from rssd.clock import parse_iso
from rssd.models.digests import Waiting, due, parse_schedule, plan_digest
from rssd.models.outbox import Feed, StoredPost
from rssd.models.post import FIELDS, PostCreate
from rssd.models.redact import strip_userinfo
from rssd.repo.db import Database, Tx

_WAIT = """
INSERT INTO digest_items (user_id, post_id, content_source_id, queued_at)
VALUES (:user_id, :post_id, :source_id, :now)
ON CONFLICT (user_id, post_id) DO NOTHING
"""

_USERS = """
SELECT DISTINCT u.id FROM digest_items d JOIN users u ON u.id = d.user_id
WHERE u.enabled = 1 AND u.disabled_reason IS NULL ORDER BY u.id
"""

_WAITING = f"""
SELECT d.post_id, d.queued_at, c.id AS feed_id, c.url AS feed_url,
       coalesce(c.name, c.feed_title) AS feed_name, c.category AS feed_category,
       {", ".join(f"p.{name}" for name in FIELDS)}
FROM digest_items d JOIN posts p ON p.id = d.post_id
JOIN content_sources c ON c.id = d.content_source_id
WHERE d.user_id = :user_id ORDER BY d.queued_at, d.post_id
"""

_INSERT = """
INSERT INTO deliveries (id, user_id, content_source_id, fetch_job_id, posts_count, body,
                        status, attempts, next_attempt_at, created_at, updated_at)
VALUES (:id, :user_id, :source_id, NULL, :posts_count, :body, 'pending', 0, :now, :now, :now)
"""


async def wait_for_digest_in(
    tx: Tx, user_id: int, source_id: int, posts: Sequence[StoredPost], now: str
) -> None:
    """Queue ``posts`` for the user's next digest, inside the caller's transaction."""
    if posts:
        await tx.executemany(
            _WAIT,
            [
                {"user_id": user_id, "post_id": p.id, "source_id": source_id, "now": now}
                for p in posts
            ],
        )


async def close_due(db: Database, now: datetime, timestamp: str) -> int:
    """Write the digest of every user whose period has closed by ``now``; returns how many
    messages were written. One short transaction per user."""
    users = [int(row[0]) for row in await db.fetchall(_USERS)]
    written = 0
    for user_id in users:
        work = functools.partial(_close_in, user_id=user_id, now=now, timestamp=timestamp)
        written += await db.write(work)
    return written


async def _close_in(tx: Tx, user_id: int, now: datetime, timestamp: str) -> int:
    user = await tx.fetchone(
        "SELECT name, format, include_content, digest, timezone FROM users WHERE id = :id",
        {"id": user_id},
    )
    if user is None:
        return 0
    schedule = parse_schedule(user["digest"], user["timezone"]) if user["digest"] else None
    waiting = [
        Waiting(
            # Receivers are third parties: the feed's credentials are not theirs to see.
            Feed(
                row["feed_id"],
                strip_userinfo(row["feed_url"]),
                row["feed_name"],
                row["feed_category"],
            ),
            StoredPost(row["post_id"], PostCreate(**{name: row[name] for name in FIELDS})),
            parse_iso(row["queued_at"]),
        )
        for row in await tx.fetchall(_WAITING, {"user_id": user_id})
    ]
    closing = due(waiting, schedule, now)
    if not closing:
        return 0
    taken = {
        int(row[0])
        for row in await tx.fetchall(
            "DELETE FROM digest_items WHERE user_id = :user_id AND post_id IN "
            f"{tx.dialect.in_json_int('ids')} RETURNING post_id",
            {"user_id": user_id, "ids": json.dumps([w.post.id for w in closing])},
        )
    }
    closing = [w for w in closing if w.post.id in taken]
    messages = plan_digest(
        user_id,
        user["name"],
        user["format"],
        closing,
        timestamp=timestamp,
        include_content=bool(user["include_content"]),
    )
    if messages:
        await tx.executemany(
            _INSERT,
            [
                {
                    "id": message.id,
                    "user_id": user_id,
                    "source_id": source_id,
                    "posts_count": message.posts_count,
                    "body": message.body,
                    "now": timestamp,
                }
                for message, source_id in messages
            ],
        )
    return len(messages)
