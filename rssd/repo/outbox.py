"""The webhook outbox (``deliveries``): written with the posts it announces, then worked
through by the delivery loop with guarded state transitions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

from msgspec import Struct

from rssd.clock import now_iso, parse_iso, to_iso, utcnow
from rssd.models.outbox import Feed, Message, StoredPost, Subscriber, chosen_posts, plan_messages
from rssd.models.post import PostCreate
from rssd.models.redact import strip_userinfo
from rssd.models.same_feed import pages_leading_to
from rssd.models.stories import Skip, duplicates, story_keys
from rssd.models.users import MAX_DEDUPE_DAYS
from rssd.repo.db import Database, Params, Row, Tx, write_in_batches
from rssd.repo.digests import wait_for_digest_in

_PRIME = (
    "UPDATE subscriptions SET primed = 1 "
    "WHERE content_source_id = :source_id AND primed = 0 RETURNING user_id"
)

# The feed's subscribers, and the users of a page whose feed it is (a page stores no posts
# when its feed is configured too: rssd/models/same_feed.py), each once. Through a page, a
# user is told from the feed's second completed fetch on, once their page subscription is
# primed: the feed's first fetch is its backlog (the page's posts, which the page told
# them while it still stored them). dedupe_days is 0 for a user with no other feed: no
# story can reach them twice, and the record of what they were told (two rows a post) is
# not written for nothing.
_SUBSCRIBERS = """
SELECT u.id, u.name, u.keep, u.block, u.format, u.include_content, u.digest,
       CASE WHEN EXISTS (SELECT 1 FROM subscriptions o WHERE o.user_id = u.id
                         AND o.content_source_id <> :source_id)
            THEN u.dedupe_days ELSE 0 END AS dedupe_days
FROM users u
WHERE u.enabled = 1 AND u.disabled_reason IS NULL AND u.id IN (
    SELECT s.user_id FROM subscriptions s WHERE s.content_source_id = :source_id
    UNION
    SELECT p.user_id FROM subscriptions p
    WHERE p.content_source_id IN {pages} AND p.primed = 1
      AND EXISTS (SELECT 1 FROM fetch_job j WHERE j.content_source_id = :source_id
                  AND j.status = 'COMPLETED' AND j.id <> :job_id))
ORDER BY u.id
"""

#: Enabled pages with subscribers whose discovered feed may be this one (pages_leading_to
#: decides: SQL cannot normalize URLs as yarl does).
_PAGES = """
SELECT c.id, c.feed_url FROM content_sources c
WHERE c.enabled = 1 AND c.feed_url IS NOT NULL AND c.id <> :source_id
  AND EXISTS (SELECT 1 FROM subscriptions s WHERE s.content_source_id = c.id)
"""

_INSERT = """
INSERT INTO deliveries (id, user_id, content_source_id, fetch_job_id, posts_count, body,
                        status, attempts, next_attempt_at, created_at, updated_at)
VALUES (:id, :user_id, :source_id, :job_id, :posts_count, :body, 'pending', 0, :now, :now, :now)
"""


async def write_outbox_in(
    tx: Tx,
    source_id: int,
    job_id: int,
    new_posts: Sequence[PostCreate],
    *,
    writes: Sequence[str] = (),
    params: Params | None = None,
) -> int:
    """Queue the messages announcing ``new_posts`` (just inserted by ``job_id``) inside the
    caller's transaction; return how many. Edited posts are never passed here.

    A subscription's first completed fetch only primes it (``notify_backlog = false`` on a
    feed never fetched before): its posts were the feed's backlog, not news. The users of
    a page whose feed this is are its subscribers too (``_SUBSCRIBERS``).

    ``writes``: the caller's own statements (with ``params``), which need nothing from
    this, sent with its first (on PostgreSQL, one round trip instead of one each).
    """
    rows = await tx.fetchall_after(writes, "SELECT 1 FROM subscriptions LIMIT 1", params)
    if not rows:
        # Nobody subscribes to anything (no [[users]]): nothing to prime or tell, in one
        # statement instead of four; on PostgreSQL each is a round trip of the writer.
        return 0
    unprimed = {int(row["user_id"]) for row in await tx.fetchall(_PRIME, {"source_id": source_id})}
    if not new_posts:
        return 0
    feed_row = await tx.fetchone(
        "SELECT id, url, coalesce(name, feed_title) AS name, category, enabled "
        "FROM content_sources WHERE id = :id",
        {"id": source_id},
    )
    assert feed_row is not None
    pages = []
    if feed_row["enabled"]:
        candidates = await tx.fetchall(_PAGES, {"source_id": source_id})
        pages = pages_leading_to(feed_row["url"], [(r["id"], r["feed_url"]) for r in candidates])
    subscribers = [
        Subscriber(
            row["id"],
            row["name"],
            tuple(json.loads(row["keep"])),
            tuple(json.loads(row["block"])),
            row["format"],
            bool(row["include_content"]),
            int(row["dedupe_days"]),
            row["digest"],
        )
        for row in await tx.fetchall(
            _SUBSCRIBERS.format(pages=tx.dialect.in_json_int("pages")),
            {"source_id": source_id, "job_id": job_id, "pages": json.dumps(pages)},
        )
        if row["id"] not in unprimed  # a subscription's own first fetch wins over a page's
    ]
    if not subscribers:
        return 0
    wanted = {post.external_id: post for post in new_posts}
    stored = [
        StoredPost(row["id"], wanted[row["external_id"]])
        for row in await tx.fetchall(
            "SELECT id, external_id FROM posts WHERE fetch_job_id = :job_id ORDER BY id",
            {"job_id": job_id},
        )
        if row["external_id"] in wanted
    ]
    now = to_iso(await tx.now())
    # Receivers are third parties: the feed's credentials are not theirs to see.
    url = strip_userinfo(feed_row["url"])
    feed = Feed(feed_row["id"], url, feed_row["name"], feed_row["category"])
    messages: list[Message] = []
    made: dict[tuple[int, bool], tuple[dict[str, object], int]] = {}  # each post made once
    chosen_by = {s.user_id: chosen_posts(s, feed, stored) for s in subscribers}
    deduping = [s for s in subscribers if s.dedupe_days > 0 and chosen_by[s.user_id]]
    if deduping:
        chosen_by.update(await _one_per_story_in(tx, deduping, chosen_by, source_id, now))
    for subscriber in subscribers:
        chosen = chosen_by[subscriber.user_id]
        if subscriber.digest is not None:
            await wait_for_digest_in(tx, subscriber.user_id, source_id, chosen, now)
            continue
        messages += plan_messages([subscriber], feed, chosen, now, filtered=True, made=made)
    if messages:
        await tx.executemany(
            _INSERT,
            [
                {
                    "id": m.id,
                    "user_id": m.user_id,
                    "source_id": source_id,
                    "job_id": job_id,
                    "posts_count": m.posts_count,
                    "body": m.body,
                    "now": now,
                }
                for m in messages
            ],
        )
    return len(messages)


_TOLD = """
SELECT user_id, story, post_id, announced_at FROM announced
WHERE user_id IN {users} AND story IN {stories} AND content_source_id <> :source_id
  AND announced_at >= :since
"""

# The newest announcement of a story wins. Two daemons announcing one story from two feeds
# at the same moment (PostgreSQL) both send it: at least once, never an error.
_ANNOUNCE = """
INSERT INTO announced (user_id, story, content_source_id, post_id, announced_at)
VALUES {rows}
ON CONFLICT (user_id, story) DO UPDATE SET content_source_id = excluded.content_source_id,
    post_id = excluded.post_id, announced_at = excluded.announced_at
"""

_SKIP = """
INSERT INTO skipped_posts (user_id, post_id, content_source_id, duplicate_of, story, skipped_at)
VALUES (:user_id, :post_id, :source_id, :duplicate_of, :story, :now)
ON CONFLICT (user_id, post_id) DO NOTHING
"""

#: Stories recorded per INSERT (three parameters each, well under both backends' limits).
ANNOUNCE_BATCH = 500


async def _one_per_story_in(
    tx: Tx,
    subscribers: Sequence[Subscriber],
    chosen_by: dict[int, list[StoredPost]],
    source_id: int,
    now: str,
) -> dict[int, list[StoredPost]]:
    """Each subscriber's chosen posts without the stories already announced to them from
    another of their feeds within their dedupe_days; the skipped ones recorded, the
    others' stories recorded as announced from this feed. One read and a few multi-row
    writes for the whole fetch, whatever the number of subscribers."""
    keys = {p.id: story_keys(p.post.external_id, p.post.url) for s in subscribers
            for p in chosen_by[s.user_id]}  # fmt: skip
    moment = parse_iso(now)
    since = {s.user_id: to_iso(moment - timedelta(days=s.dedupe_days)) for s in subscribers}
    rows = await tx.fetchall(
        _TOLD.format(
            users=tx.dialect.in_json_int("users"), stories=tx.dialect.in_json_text("stories")
        ),
        {
            "users": json.dumps(sorted(since)),
            "stories": json.dumps(
                sorted({key for post_keys in keys.values() for key in post_keys})
            ),
            "source_id": source_id,
            "since": min(since.values()),
        },
    )
    told: dict[int, dict[str, int]] = {}
    for row in rows:
        if str(row["announced_at"]) >= since[int(row["user_id"])]:
            told.setdefault(int(row["user_id"]), {})[row["story"]] = int(row["post_id"])
    fresh: dict[int, list[StoredPost]] = {}
    skipped_rows: list[dict[str, object]] = []
    announced: dict[tuple[int, str], int] = {}  # one row per story: the batch has no twins
    for subscriber in subscribers:
        user_id, posts = subscriber.user_id, chosen_by[subscriber.user_id]
        skips: list[Skip] = duplicates([(p.id, keys[p.id]) for p in posts], told.get(user_id, {}))
        skipped = {skip.post_id for skip in skips}
        skipped_rows += [
            {"user_id": user_id, "post_id": s.post_id, "source_id": source_id,
             "duplicate_of": s.duplicate_of, "story": s.story, "now": now}
            for s in skips
        ]  # fmt: skip
        fresh[user_id] = [p for p in posts if p.id not in skipped]
        for post in fresh[user_id]:
            for key in keys[post.id]:
                announced[(user_id, key)] = post.id
    if skipped_rows:
        await tx.executemany(_SKIP, skipped_rows)
    items = list(announced.items())
    for start in range(0, len(items), ANNOUNCE_BATCH):
        batch = items[start : start + ANNOUNCE_BATCH]
        params: dict[str, object] = {"source_id": source_id, "now": now}
        values = []
        for index, ((user_id, story), post_id) in enumerate(batch):
            params |= {f"u{index}": user_id, f"s{index}": story, f"p{index}": post_id}
            values.append(f"(:u{index}, :s{index}, :source_id, :p{index}, :now)")
        await tx.execute(_ANNOUNCE.format(rows=", ".join(values)), params)
    return fresh


_DELIVERABLE = "u.enabled = 1 AND u.disabled_reason IS NULL"
#: Oldest message first, also through an outage: only a user's oldest pending message is
#: ever sent (or retried); the ones after it wait until it is delivered or dead, so they do
#: not spend their attempts, or arrive, before it. Read off the deliveries_pending index.
_OLDEST_PENDING = (
    "(SELECT min(o.id) FROM deliveries o WHERE o.user_id = d.user_id AND o.status = 'pending')"
)
_HEAD = f"d.id = {_OLDEST_PENDING}"
#: Why a pending message is not sent at its next_attempt_at (None: nothing holds it).
_HELD = (
    "CASE WHEN d.status <> 'pending' THEN NULL "
    "WHEN u.enabled = 0 THEN 'user not in config.toml' "
    "WHEN u.disabled_reason IS NOT NULL THEN 'endpoint disabled (' || u.disabled_reason || ')' "
    f"WHEN d.id > {_OLDEST_PENDING} THEN 'after an older message' ELSE NULL END"
)
#: A message made due again: fresh attempts, the earlier ones counted, its error kept.
_AGAIN = (
    "status = 'pending', earlier_attempts = earlier_attempts + attempts, attempts = 0, "
    "next_attempt_at = :now, updated_at = :now"
)
_COLUMNS = (
    "d.id, d.user_id, u.name AS user_name, d.content_source_id, d.fetch_job_id, "
    "d.posts_count, d.status, d.attempts, d.earlier_attempts, d.next_attempt_at, "
    f"d.last_attempt_at, d.last_http_status, d.last_error, d.created_at, d.updated_at, "
    f"{_HELD} AS held, "
    # The feed by name in the delivery.* log lines and `rssd deliveries --json`.
    "(SELECT coalesce(c.name, c.feed_title) FROM content_sources c "
    "WHERE c.id = d.content_source_id) AS source_name"
)


def _free(clock: str, users: str = "u") -> str:
    """The user's endpoint (the ``users`` row) is not paused and no other sender than
    ``:holder`` holds a live lease on it, by ``clock`` (the dialect's)."""
    return (
        f"({users}.paused_until IS NULL OR {users}.paused_until <= {clock}) AND "
        f"({users}.sender IS NULL OR {users}.sender = :holder OR {users}.sender_until < {clock})"
    )


class DueUser(Struct, frozen=True):
    """A user with messages due, and whether the endpoint is failing (failing_since)."""

    user_id: int
    failing: bool


class Delivery(Struct, frozen=True):
    """A ``deliveries`` row (without its body, which only the sender reads)."""

    id: str
    user_id: int
    user_name: str
    content_source_id: int
    fetch_job_id: int | None
    posts_count: int
    status: str
    attempts: int
    next_attempt_at: str
    last_attempt_at: str | None
    last_http_status: int | None
    last_error: str | None
    created_at: str
    updated_at: str
    earlier_attempts: int = 0  # made before the last ``rssd redeliver``
    held: str | None = None  # why a pending message waits (endpoint disabled, an older one)
    source_name: str | None = None  # the feed's configured name, else its own title


def _delivery(row: Row) -> Delivery:
    return Delivery(**{key: row[key] for key in Delivery.__struct_fields__})


class Due(Struct, frozen=True):
    """A message to send now: the row, the exact body, the endpoint's failure clock, and
    the digest of the user's config entry (URL and secret included) as the last sync
    stored it, which the sender's own config must match."""

    delivery: Delivery
    body: str
    failing_since: str | None
    config_digest: str


class Attempt(Struct, frozen=True):
    """What the loop records after one attempt (the pure rules decided it)."""

    delivery_id: str
    user_id: int
    attempts: int  # the message's attempts before this one: the guard
    at: str
    status: str  # 'pending' | 'delivered' | 'dead'
    next_attempt_at: str
    http_status: int | None
    error: str | None
    disable: str | None
    pause_until: str | None = None  # the endpoint's pause (a 429's Retry-After)
    holder: str | None = None  # the turn's lease holder: the lease ends with the record


class SkippedPost(Struct, frozen=True):
    """A post not announced to a user: ``duplicate_of`` (another feed's) told the story."""

    user_name: str
    post_id: int
    content_source_id: int
    duplicate_of: int
    story: str
    skipped_at: str


class OutboxRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def skipped(self, user_id: int | None = None, limit: int = 0) -> list[SkippedPost]:
        """Posts skipped as duplicates, newest first."""
        rows = await self._db.fetchall(
            "SELECT u.name AS user_name, s.post_id, s.content_source_id, s.duplicate_of, "
            "s.story, s.skipped_at FROM skipped_posts s JOIN users u ON u.id = s.user_id "
            "WHERE (:user_id IS NULL OR s.user_id = :user_id) "
            f"ORDER BY s.skipped_at DESC, s.post_id DESC{' LIMIT :limit' if limit else ''}",
            {"user_id": user_id, "limit": limit},
        )
        return [
            SkippedPost(
                row["user_name"],
                int(row["post_id"]),
                int(row["content_source_id"]),
                int(row["duplicate_of"]),
                row["story"],
                str(row["skipped_at"]),
            )
            for row in rows
        ]

    async def skipped_counts(self) -> dict[int, int]:
        """Per user: posts skipped as duplicates."""
        rows = await self._db.fetchall(
            "SELECT user_id, count(*) AS n FROM skipped_posts GROUP BY user_id"
        )
        return {int(row["user_id"]): int(row["n"]) for row in rows}

    async def due_users(self, holder: str) -> list[DueUser]:
        """Users whose oldest pending message is due now (by the dialect's clock), whose
        endpoint is enabled, not paused and not being sent to by another sender than
        ``holder``; the longest waiting first."""
        clock = self._db.dialect.clock
        rows = await self._db.fetchall(
            f"SELECT d.user_id, min(d.next_attempt_at) AS oldest, "
            f"max(CASE WHEN u.failing_since IS NULL THEN 0 ELSE 1 END) AS failing "
            f"FROM deliveries d JOIN users u ON u.id = d.user_id "
            f"WHERE d.status = 'pending' AND d.next_attempt_at <= {clock} AND {_HEAD} "
            f"AND {_DELIVERABLE} AND {_free(clock)} GROUP BY d.user_id ORDER BY oldest",
            {"now": now_iso(), "holder": holder},
        )
        return [DueUser(int(row["user_id"]), bool(row["failing"])) for row in rows]

    async def next_wakeup(self, holder: str, busy: Sequence[int] = ()) -> str | None:
        """When the earliest oldest-pending message of an enabled endpoint can be sent: its
        due time, or later the end of its endpoint's pause or of another sender's lease;
        leaving out the ``busy`` users (a turn of theirs is running)."""
        params: dict[str, object] = {f"busy{i}": user_id for i, user_id in enumerate(busy)}
        skip = f"AND d.user_id NOT IN ({', '.join(':' + key for key in params)}) " if busy else ""
        row = await self._db.fetchone(
            f"SELECT min(CASE "
            f"WHEN u.paused_until IS NOT NULL AND u.paused_until > d.next_attempt_at "
            f"THEN u.paused_until "
            f"WHEN u.sender IS NOT NULL AND u.sender != :holder "
            f"AND u.sender_until > d.next_attempt_at THEN u.sender_until "
            f"ELSE d.next_attempt_at END) FROM deliveries d JOIN users u ON u.id = d.user_id "
            f"WHERE d.status = 'pending' {skip}AND {_HEAD} AND {_DELIVERABLE}",
            params | {"holder": holder},
        )
        return str(row[0]) if row and row[0] else None

    async def take_turn(self, user_id: int, holder: str, lease_seconds: float) -> bool:
        """Become the user's one sender for ``lease_seconds`` (by the dialect's clock),
        unless another sender's lease is live or the endpoint is paused; True if so.

        A lease in the user's row, not a lock on a connection: it holds whatever happens
        to this process's connections, and one that outlives its sender (killed -9)
        expires by itself."""
        now = utcnow()  # SQLite's clock; PostgreSQL judges by its own
        dialect = self._db.dialect
        changed = await self._db.write(
            lambda tx: tx.execute(
                f"UPDATE users SET sender = :holder, sender_until = {dialect.lease_until} "
                f"WHERE id = :id AND {_free(dialect.clock, 'users')}",
                {
                    "id": user_id,
                    "holder": holder,
                    "now": to_iso(now),
                    "lease": to_iso(now + timedelta(seconds=lease_seconds)),
                    "lease_seconds": lease_seconds,
                },
            )
        )
        return changed == 1

    async def end_all_turns(self) -> None:
        """Every user's lease given up: at start-up on SQLite, under the daemon lock,
        where the only holder there can be is a daemon that died."""
        await self._db.write_one(
            "UPDATE users SET sender = NULL, sender_until = NULL WHERE sender IS NOT NULL"
        )

    async def end_turn(self, user_id: int, holder: str) -> None:
        """Give the user's lease up, if ``holder`` still has it."""
        await self._db.write(
            lambda tx: tx.execute(
                "UPDATE users SET sender = NULL, sender_until = NULL "
                "WHERE id = :id AND sender = :holder",
                {"id": user_id, "holder": holder},
            )
        )

    async def oldest_due(self, user_id: int, after: str = "") -> Due | None:
        """The user's oldest pending message if it is due now (and its id is above
        ``after``), its body, and the endpoint's failing_since; None if not, or the
        endpoint is not deliverable: a newer message never goes before an older one."""
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS}, d.body, u.failing_since AS failing_since, "
            f"u.config_digest FROM deliveries d "
            f"JOIN users u ON u.id = d.user_id WHERE d.user_id = :user_id "
            f"AND d.status = 'pending' AND d.next_attempt_at <= {self._db.dialect.clock} "
            f"AND d.id > :after AND {_HEAD} AND {_DELIVERABLE} ORDER BY d.id LIMIT 1",
            {"user_id": user_id, "now": now_iso(), "after": after},
        )
        if row is None:
            return None
        return Due(
            _delivery(row),
            str(row["body"]),
            row["failing_since"],
            str(row["config_digest"]),
        )

    async def record(self, attempt: Attempt) -> bool:
        """The attempt's result on the message and on the user's endpoint, in one
        transaction. False (nothing written, the user's row untouched too) if the message
        changed meanwhile (a ``rssd redeliver`` reset it): its new schedule stands, and a
        superseded attempt must not mark the endpoint failing, working or disabled. A pause
        the endpoint asked for is written either way: it is the endpoint's, not the
        message's."""

        async def work(tx: Tx) -> bool:
            if attempt.holder is not None:  # the turn ends here: one write, not two
                await tx.execute(
                    "UPDATE users SET sender = NULL, sender_until = NULL "
                    "WHERE id = :id AND sender = :holder",
                    {"id": attempt.user_id, "holder": attempt.holder},
                )
            if attempt.pause_until is not None:
                await tx.execute(
                    "UPDATE users SET paused_until = :until WHERE id = :id",
                    {"id": attempt.user_id, "until": attempt.pause_until},
                )
            changed = await tx.execute(
                "UPDATE deliveries SET status = :status, attempts = attempts + 1, "
                "next_attempt_at = :next, last_attempt_at = :at, "
                "last_http_status = :http_status, last_error = :error, updated_at = :at "
                "WHERE id = :id AND status = 'pending' AND attempts = :attempts",
                {
                    "id": attempt.delivery_id,
                    "attempts": attempt.attempts,
                    "status": attempt.status,
                    "next": attempt.next_attempt_at,
                    "at": attempt.at,
                    "http_status": attempt.http_status,
                    "error": attempt.error,
                },
            )
            if changed != 1:
                return False  # superseded: the endpoint's state is not this attempt's to set
            if attempt.status == "delivered":
                await tx.execute(
                    "UPDATE users SET last_success_at = :at, failing_since = NULL WHERE id = :id",
                    {"id": attempt.user_id, "at": attempt.at},
                )
            else:
                await tx.execute(
                    "UPDATE users SET last_error_at = :at, last_error = :error, "
                    "failing_since = coalesce(failing_since, :at) WHERE id = :id",
                    {"id": attempt.user_id, "at": attempt.at, "error": attempt.error},
                )
            if attempt.disable:
                await tx.execute(
                    "UPDATE users SET disabled_reason = :reason, disabled_at = :at, "
                    "updated_at = :at WHERE id = :id AND disabled_reason IS NULL",
                    {"id": attempt.user_id, "at": attempt.at, "reason": attempt.disable},
                )
            return True

        return await self._db.write(work)

    async def recent(
        self,
        user_id: int | None = None,
        statuses: tuple[str, ...] = ("pending", "delivered", "dead"),
        failed_only: bool = False,
        limit: int = 0,
    ) -> list[Delivery]:
        """Newest first. ``failed_only``: pending messages with a failed attempt."""
        allowed = ", ".join(f"'{status}'" for status in statuses if status.isalpha())
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM deliveries d JOIN users u ON u.id = d.user_id "
            f"WHERE (:user_id IS NULL OR d.user_id = :user_id) AND d.status IN ({allowed}) "
            f"AND (:failed = 0 OR d.last_error IS NOT NULL) "
            f"ORDER BY d.id DESC{' LIMIT :limit' if limit else ''}",
            {"user_id": user_id, "failed": int(failed_only), "limit": limit},
        )
        return [_delivery(row) for row in rows]

    async def announcing(self, post_id: int) -> list[Delivery]:
        """The messages that announced the post ``post_id``, oldest first: those of its feed
        written with or after it whose body lists it (deliveries_source narrows them)."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM deliveries d JOIN users u ON u.id = d.user_id "
            "JOIN posts p ON p.id = :post_id "
            "WHERE d.content_source_id = p.content_source_id AND d.created_at >= p.created_at "
            f"AND {self._db.dialect.announces_post} ORDER BY d.id",
            {"post_id": post_id},
        )
        return [_delivery(row) for row in rows]

    async def counts(self) -> dict[int, dict[str, int]]:
        """Per user: messages by status."""
        rows = await self._db.fetchall(
            "SELECT user_id, status, count(*) AS n FROM deliveries GROUP BY user_id, status"
        )
        out: dict[int, dict[str, int]] = {}
        for row in rows:
            out.setdefault(int(row["user_id"]), {})[row["status"]] = int(row["n"])
        return out

    async def prune(self, older_than: str, batch: int = 2000) -> int:
        """Delete delivered and dead messages last touched before ``older_than``, in short
        batches (pending ones are never pruned: they are still owed); returns how many.
        The record of skipped duplicates goes by the same age, the stories told once
        they are older than any dedupe_days can reach back."""
        total = await self._prune(
            "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries "
            "WHERE status IN ('delivered', 'dead') AND updated_at < :cutoff LIMIT :batch)",
            older_than,
            batch,
        )
        await self._prune(
            "DELETE FROM skipped_posts WHERE (user_id, post_id) IN (SELECT user_id, post_id "
            "FROM skipped_posts WHERE skipped_at < :cutoff LIMIT :batch)",
            older_than,
            batch,
        )
        told_before = to_iso(await self._db.now() - timedelta(days=MAX_DEDUPE_DAYS + 1))
        await self._prune(
            "DELETE FROM announced WHERE (user_id, story) IN (SELECT user_id, story "
            "FROM announced WHERE announced_at < :cutoff LIMIT :batch)",
            told_before,
            batch,
        )
        return total

    async def _prune(self, sql: str, cutoff: str, batch: int) -> int:
        return await write_in_batches(
            self._db, lambda tx: tx.execute(sql, {"cutoff": cutoff, "batch": batch}), batch
        )

    async def redeliver(self, ids: Sequence[str]) -> list[str]:
        """Back to pending, due now, with a fresh set of attempts (same webhook-id); the
        attempts made so far are kept in ``earlier_attempts``, the last error too."""

        async def work(tx: Tx) -> list[str]:
            now = to_iso(await tx.now())
            done: list[str] = []
            for delivery_id in ids:
                rows = await tx.fetchall(
                    f"UPDATE deliveries SET {_AGAIN} WHERE id = :id RETURNING id",
                    {"id": delivery_id, "now": now},
                )
                done.extend(str(row[0]) for row in rows)
            return done

        return await self._db.write(work)

    async def redeliver_where(
        self, *, user_id: int | None = None, since: str | None = None, dead_only: bool = False
    ) -> int:
        """``redeliver`` for every message of a user created since a time, or (``dead_only``)
        every dead message, of one user or all, since a time or ever."""
        where = ["1 = 1"]
        params: dict[str, object] = {"now": to_iso(await self._db.now())}
        if user_id is not None:
            where.append("user_id = :user_id")
            params["user_id"] = user_id
        if since is not None:
            where.append("created_at >= :since")
            params["since"] = since
        if dead_only:
            where.append("status = 'dead'")
        rows = await self._db.write_one(
            f"UPDATE deliveries SET {_AGAIN} WHERE {' AND '.join(where)} RETURNING id", params
        )
        return len(rows)
