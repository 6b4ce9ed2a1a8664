"""UserRepo: ``users`` and ``subscriptions`` kept in step with config.toml, and the health
of each user's endpoint (disabled after a 410 or days of failures, re-enabled by an edit).
"""

from __future__ import annotations

import hashlib
import json

from msgspec import Struct

from rssd.clock import to_iso
from rssd.models.config import Config
from rssd.models.users import UserConfig, user_feed_urls
from rssd.repo.db import Database, Row, Tx

_COLUMNS = (
    "id, name, webhook_url, enabled, keep, block, config_digest, disabled_reason, "
    "disabled_at, failing_since, last_success_at, last_error_at, last_error, created_at, "
    "updated_at, format, include_content, dedupe_days, digest, timezone"
)


class User(Struct, frozen=True):
    """A ``users`` row: who, where, and how their endpoint is doing."""

    id: int
    name: str
    webhook_url: str
    enabled: bool  # in config.toml
    keep: tuple[str, ...]
    block: tuple[str, ...]
    disabled_reason: str | None  # the endpoint's: 'gone' | 'failing'
    disabled_at: str | None
    failing_since: str | None
    last_success_at: str | None
    last_error_at: str | None
    last_error: str | None
    created_at: str
    format: str = "standard"
    include_content: bool = False
    dedupe_days: int = 7
    digest: str | None = None
    timezone: str | None = None

    @property
    def deliverable(self) -> bool:
        return self.enabled and self.disabled_reason is None


def user_of(row: Row) -> User:
    return User(
        id=row["id"],
        name=row["name"],
        webhook_url=row["webhook_url"],
        enabled=bool(row["enabled"]),
        keep=tuple(json.loads(row["keep"])),
        block=tuple(json.loads(row["block"])),
        disabled_reason=row["disabled_reason"],
        disabled_at=row["disabled_at"],
        failing_since=row["failing_since"],
        last_success_at=row["last_success_at"],
        last_error_at=row["last_error_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        format=row["format"],
        include_content=bool(row["include_content"]),
        dedupe_days=int(row["dedupe_days"]),
        digest=row["digest"],
        timezone=row["timezone"],
    )


def config_digest(user: UserConfig) -> str:
    """Changes whenever the operator changes the user's entry: an edit re-enables a
    disabled endpoint. The secret takes part only through its one-way fingerprint."""
    entry: dict[str, object] = {
        "webhook_url": user.webhook_url,
        "secret": user.secret_fingerprint(),
        "feeds": sorted(user.feeds),
        "keep": [rule.text for rule in user.keep],
        "block": [rule.text for rule in user.block],
        "notify_backlog": user.notify_backlog,
    }
    # Settings added later count only when set away from their defaults, so an upgrade
    # leaves every digest (and every disabled endpoint) as it was.
    for key, default in NOTIFY_DEFAULTS.items():
        if getattr(user, key) != default:
            entry[key] = getattr(user, key)
    return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:32]


NOTIFY_DEFAULTS: dict[str, object] = {
    "format": "standard",
    "dedupe_days": 7,
    "include_content": False,
    "digest": None,
    "timezone": None,
}


class UserSyncReport(Struct, frozen=True):
    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    disabled: tuple[str, ...] = ()
    reenabled: tuple[str, ...] = ()  # endpoints disabled before, enabled by an edit
    subscribed: int = 0
    unsubscribed: int = 0


class UserRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def sync(self, config: Config) -> UserSyncReport:
        """Users and subscriptions as config.toml says, in one transaction. Run after the
        sources' sync: subscriptions name sources by id.

        A new subscription starts ``primed = 0`` (its first completed fetch not announced)
        when the user does not want the backlog and the feed has never been fetched.
        """
        return await self._db.write(lambda tx: sync_users_in(tx, config))

    async def all(self) -> list[User]:
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM users ORDER BY name")
        return [user_of(row) for row in rows]

    async def get(self, name: str) -> User | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM users WHERE name = :name", {"name": name}
        )
        return user_of(row) if row else None

    async def subscriptions(self) -> dict[int, list[str]]:
        """Each user's subscribed feed URLs."""
        rows = await self._db.fetchall(
            "SELECT s.user_id, c.url FROM subscriptions s "
            "JOIN content_sources c ON c.id = s.content_source_id ORDER BY c.id"
        )
        out: dict[int, list[str]] = {}
        for row in rows:
            out.setdefault(row["user_id"], []).append(row["url"])
        return out

    async def enable_endpoint(self, name: str) -> User | None:
        """``rssd users --enable``: deliver again now, the failure clock reset."""

        async def work(tx: Tx) -> User | None:
            row = await tx.fetchone(
                f"SELECT {_COLUMNS} FROM users WHERE name = :name", {"name": name}
            )
            if row is None:
                return None
            await _enable_in(tx, row["id"], to_iso(await tx.now()))
            return user_of(row)

        return await self._db.write(work)


async def _enable_in(tx: Tx, user_id: int, now: str) -> None:
    await tx.execute(
        "UPDATE users SET disabled_reason = NULL, disabled_at = NULL, failing_since = NULL, "
        "updated_at = :now WHERE id = :id",
        {"id": user_id, "now": now},
    )
    await tx.execute(
        "UPDATE deliveries SET next_attempt_at = :now, updated_at = :now "
        "WHERE user_id = :id AND status = 'pending'",
        {"id": user_id, "now": now},
    )


async def sync_users_in(tx: Tx, config: Config) -> UserSyncReport:
    """The users and subscriptions of ``config``, inside the caller's transaction (the
    config sync's, under its lock: daemons starting together take turns). The inserts
    are upserts as well, so two syncs that meet anyway cannot fail on a duplicate."""
    users = config.users
    feed_urls = [feed.url for feed in config.feeds]
    now = to_iso(await tx.now())
    stored = {row["name"]: row for row in await tx.fetchall(f"SELECT {_COLUMNS} FROM users")}
    sources = {
        row["url"]: (row["id"], bool(row["fetched"]))
        for row in await tx.fetchall(
            "SELECT c.id, c.url, EXISTS (SELECT 1 FROM fetch_job j WHERE "
            "j.content_source_id = c.id AND j.status = 'COMPLETED') AS fetched "
            "FROM content_sources c"
        )
    }
    added, updated, disabled, reenabled = [], [], [], []
    subscribed = unsubscribed = 0
    for user in users:
        values = {
            "name": user.name,
            "webhook_url": user.webhook_url,
            "keep": json.dumps([rule.text for rule in user.keep]),
            "block": json.dumps([rule.text for rule in user.block]),
            "config_digest": config_digest(user),
            "format": user.format,
            "include_content": int(user.include_content),
            "dedupe_days": user.dedupe_days,
            "digest": user.digest,
            "timezone": user.timezone,
            "now": now,
        }
        row = stored.get(user.name)
        if row is None:
            inserted = await tx.fetchone(
                "INSERT INTO users (name, webhook_url, keep, block, config_digest, format, "
                "include_content, dedupe_days, digest, timezone, created_at, updated_at) "
                "VALUES (:name, :webhook_url, :keep, :block, :config_digest, :format, "
                ":include_content, :dedupe_days, :digest, :timezone, :now, :now) "
                "ON CONFLICT (name) DO NOTHING RETURNING id",
                values,
            )
            if inserted is None:  # a sync outside the lock inserted it meanwhile: it stands
                inserted = await tx.fetchone("SELECT id FROM users WHERE name = :name", values)
            else:
                added.append(user.name)
            assert inserted is not None
            user_id = int(inserted["id"])
        else:
            user_id = int(row["id"])
            if row["config_digest"] != values["config_digest"] or not row["enabled"]:
                await tx.execute(
                    "UPDATE users SET webhook_url = :webhook_url, keep = :keep, block = :block, "
                    "config_digest = :config_digest, format = :format, "
                    "include_content = :include_content, dedupe_days = :dedupe_days, "
                    "digest = :digest, timezone = :timezone, "
                    "enabled = 1, updated_at = :now WHERE name = :name",
                    values,
                )
                updated.append(user.name)
                if row["disabled_reason"] is not None:
                    await _enable_in(tx, user_id, now)
                    reenabled.append(user.name)
        wanted = {
            sources[url][0]: sources[url][1]
            for url in user_feed_urls(user, feed_urls)
            if url in sources
        }
        have = {
            int(r["content_source_id"])
            for r in await tx.fetchall(
                "SELECT content_source_id FROM subscriptions WHERE user_id = :id", {"id": user_id}
            )
        }
        for source_id, fetched in wanted.items():
            if source_id not in have:
                await tx.execute(
                    "INSERT INTO subscriptions (user_id, content_source_id, primed, created_at) "
                    "VALUES (:user_id, :source_id, :primed, :now) ON CONFLICT DO NOTHING",
                    {
                        "user_id": user_id,
                        "source_id": source_id,
                        "primed": int(user.notify_backlog or fetched),
                        "now": now,
                    },
                )
                subscribed += 1
        for source_id in have - wanted.keys():
            await tx.execute(
                "DELETE FROM subscriptions WHERE user_id = :user_id "
                "AND content_source_id = :source_id",
                {"user_id": user_id, "source_id": source_id},
            )
            unsubscribed += 1
    configured = {user.name for user in users}
    for name, row in stored.items():
        if name not in configured and row["enabled"]:
            await tx.execute(
                "UPDATE users SET enabled = 0, updated_at = :now WHERE id = :id",
                {"id": row["id"], "now": now},
            )
            disabled.append(name)
    return UserSyncReport(
        tuple(added), tuple(updated), tuple(disabled), tuple(reenabled), subscribed, unsubscribed
    )
