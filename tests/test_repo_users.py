"""UserRepo.sync: users and subscriptions kept in step with config.toml; endpoint state."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from msgspec.structs import replace

from rssd.clock import to_iso, utcnow
from rssd.daemon.startup import sync_sources
from rssd.models.config import Config
from rssd.models.dto import FetchMeta
from rssd.repo.db import Database
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.outbox import Attempt, OutboxRepo
from rssd.repo.users import UserRepo
from tests.support.jobs import ongoing_job
from tests.support.webhooks import make_config, user

pytestmark = pytest.mark.both_backends

A, B = "http://a.example/feed", "http://b.example/rss"
HOOK = "https://hooks.example/"


async def subscriptions(db: Database) -> set[tuple[str, str, int]]:
    rows = await db.fetchall(
        "SELECT u.name, c.url, s.primed FROM subscriptions s JOIN users u ON u.id = s.user_id "
        "JOIN content_sources c ON c.id = s.content_source_id"
    )
    return {(row[0], row[1], row[2]) for row in rows}


async def sync(db: Database, config: Config) -> None:
    await sync_sources(db, config)


def cfg(tmp_path: Path, users: list[dict[str, Any]], feeds: tuple[str, ...] = (A, B)) -> Config:
    return make_config(tmp_path, list(feeds), users)


async def complete_a_fetch(db: Database, url: str) -> None:
    row = await db.fetchone("SELECT id FROM content_sources WHERE url = :url", {"url": url})
    assert row is not None
    job = await ongoing_job(db, row[0])
    await FetchJobRepo(db).mark_completed(job.id, FetchMeta(http_status=200))


async def test_users_and_subscriptions_are_added(db: Database, tmp_path: Path) -> None:
    await sync(
        db,
        cfg(tmp_path, [user("alice", HOOK, [A]), user("bob", HOOK, ["*"], notify_backlog=True)]),
    )
    users = {u.name: u for u in await UserRepo(db).all()}
    assert set(users) == {"alice", "bob"}
    assert all(u.enabled and u.deliverable for u in users.values())
    # Never fetched: alice (no backlog) skips the first fetch, bob (backlog) does not.
    assert await subscriptions(db) == {("alice", A, 0), ("bob", A, 1), ("bob", B, 1)}


async def test_subscribing_to_a_fetched_feed_is_primed(db: Database, tmp_path: Path) -> None:
    await sync(db, cfg(tmp_path, []))
    await complete_a_fetch(db, A)
    await sync(db, cfg(tmp_path, [user("alice", HOOK, [A, B])]))
    assert await subscriptions(db) == {("alice", A, 1), ("alice", B, 0)}


async def test_removed_feeds_and_users(db: Database, tmp_path: Path) -> None:
    await sync(db, cfg(tmp_path, [user("alice", HOOK, [A, B]), user("bob", HOOK, [A])]))
    await sync(db, cfg(tmp_path, [user("alice", HOOK, [B])]))
    users = {u.name: u for u in await UserRepo(db).all()}
    assert users["alice"].enabled
    assert not users["bob"].enabled, "a user removed from the file is disabled, not deleted"
    assert not users["bob"].deliverable
    assert ("alice", A, 0) not in await subscriptions(db)
    # Back in the file: enabled again, same row.
    await sync(db, cfg(tmp_path, [user("alice", HOOK, [B]), user("bob", HOOK, [A])]))
    again = {u.name: u for u in await UserRepo(db).all()}
    assert again["bob"].enabled
    assert again["bob"].id == users["bob"].id


T0 = "2026-11-01T00:00:00.000Z"


async def queue_message(db: Database, user_id: int, n: int) -> str:
    """A pending message for the user (what a fetch would have queued)."""
    source = await db.fetchone("SELECT id FROM content_sources WHERE url = :url", {"url": A})
    assert source is not None
    message_id = f"msg_test{n:04d}"
    await db.write_one(
        "INSERT INTO deliveries (id, user_id, content_source_id, fetch_job_id, posts_count, "
        "body, status, attempts, next_attempt_at, created_at, updated_at) VALUES (:id, :user_id, "
        ":source_id, NULL, 1, '{}', 'pending', 0, :at, :at, :at)",
        {"id": message_id, "user_id": user_id, "source_id": source[0], "at": T0},
    )
    return message_id


def attempt(
    message_id: str,
    user_id: int,
    at: str,
    *,
    status: str = "pending",
    error: str | None = "HTTP 500",
    disable: str | None = None,
    attempts: int = 0,
) -> Attempt:
    return Attempt(message_id, user_id, attempts, at, status, at, None, error, disable)


async def test_a_disabled_endpoint_is_enabled_by_an_edit_only(db: Database, tmp_path: Path) -> None:
    config = cfg(tmp_path, [user("alice", HOOK, [A])])
    await sync(db, config)
    repo, outbox = UserRepo(db), OutboxRepo(db)
    alice = await repo.get("alice")
    assert alice is not None
    first, second = await queue_message(db, alice.id, 1), await queue_message(db, alice.id, 2)
    at = "2026-11-30T00:00:00.000Z"
    assert await outbox.record(attempt(first, alice.id, at, error="HTTP 410", disable="gone"))
    # A later disabling reason does not overwrite the first.
    assert await outbox.record(attempt(second, alice.id, at, disable="failing"))
    await sync(db, config)  # the same file: stays disabled
    still = await repo.get("alice")
    assert still is not None
    assert still.disabled_reason == "gone"
    await sync(db, cfg(tmp_path, [user("alice", HOOK + "v2", [A])]))
    enabled = await repo.get("alice")
    assert enabled is not None
    assert enabled.disabled_reason is None
    assert enabled.webhook_url == HOOK + "v2"


async def test_enable_by_command_and_failure_clock(db: Database, tmp_path: Path) -> None:
    await sync(db, cfg(tmp_path, [user("alice", HOOK, [A])]))
    repo, outbox = UserRepo(db), OutboxRepo(db)
    alice = await repo.get("alice")
    assert alice is not None
    message = await queue_message(db, alice.id, 1)
    assert await outbox.record(attempt(message, alice.id, "2026-11-01T00:00:00.000Z"))
    assert await outbox.record(
        attempt(message, alice.id, "2026-11-02T00:00:00.000Z", error="HTTP 502", attempts=1)
    )
    failing = await repo.get("alice")
    assert failing is not None
    assert (failing.failing_since, failing.last_error) == ("2026-11-01T00:00:00.000Z", "HTTP 502")
    assert await outbox.record(
        attempt(message, alice.id, "2026-11-06T00:00:00.000Z", attempts=2, disable="failing")
    )
    assert await repo.enable_endpoint("alice") is not None
    assert await repo.enable_endpoint("nobody") is None
    enabled = await repo.get("alice")
    assert enabled is not None
    assert (enabled.disabled_reason, enabled.failing_since) == (None, None)
    assert await outbox.record(
        attempt(message, alice.id, "2026-11-07T00:00:00.000Z", status="delivered", attempts=3)
    )
    ok = await repo.get("alice")
    assert ok is not None
    assert (ok.last_success_at, ok.failing_since) == ("2026-11-07T00:00:00.000Z", None)


async def test_a_superseded_attempt_leaves_the_endpoint_alone(db: Database, tmp_path: Path) -> None:
    """An attempt whose message was reset meanwhile (``rssd redeliver``) records nothing:
    not on the message, and not the endpoint's failure, success or disabling either."""
    await sync(db, cfg(tmp_path, [user("alice", HOOK, [A])]))
    repo, outbox = UserRepo(db), OutboxRepo(db)
    alice = await repo.get("alice")
    assert alice is not None
    message = await queue_message(db, alice.id, 1)
    at = "2026-11-05T00:00:00.000Z"
    for stale in (
        attempt(message, alice.id, at, attempts=3, error="HTTP 410", disable="gone"),
        attempt(message, alice.id, at, attempts=3, status="delivered", error=None),
    ):
        assert not await outbox.record(stale)
    after = await repo.get("alice")
    assert after is not None
    assert (after.disabled_reason, after.failing_since, after.last_error) == (None, None, None)
    assert (after.last_error_at, after.last_success_at) == (None, None)
    row = await db.fetchone(
        "SELECT status, attempts FROM deliveries WHERE id = :id", {"id": message}
    )
    assert row is not None
    assert (row["status"], row["attempts"]) == ("pending", 0)


async def test_the_secret_is_not_stored(
    db: Database, db_target: Path | str, tmp_path: Path
) -> None:
    secret = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    await sync(db, cfg(tmp_path, [user("alice", HOOK, [A])]))
    if isinstance(db_target, str):  # PostgreSQL: every row of every table, as text
        tables = await db.fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        for (table,) in tables:
            rows = await db.fetchall(f"SELECT t::text FROM {table} t")
            assert all(secret not in row[0] for row in rows), table
        return
    await db.close()
    assert secret.encode() not in _file_and_wal(db_target)


def _file_and_wal(path: Path) -> bytes:
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def test_a_newer_message_waits_behind_an_older_one_being_retried(
    db: Database, tmp_path: Path
) -> None:
    """After a failed attempt the oldest message waits for its retry; the newer one, due
    since it was queued, is not sent before it (oldest first, also through an outage),
    and does not spend attempts meanwhile. Once the older one is done, the newer goes."""
    await sync(db, cfg(tmp_path, [user("alice", HOOK, [A])]))
    alice = next(u for u in await UserRepo(db).all() if u.name == "alice")
    outbox = OutboxRepo(db)
    older = await queue_message(db, alice.id, 1)
    newer = await queue_message(db, alice.id, 2)
    later = to_iso(utcnow() + timedelta(hours=1))
    failed = attempt(older, alice.id, T0)
    assert await outbox.record(replace(failed, next_attempt_at=later))
    assert await outbox.due_users("me") == []  # the newer one is due, but behind the older
    assert await outbox.oldest_due(alice.id) is None
    assert await outbox.next_wakeup("me") == later  # the older one's retry, not "now"
    assert await outbox.record(
        replace(attempt(older, alice.id, T0, status="delivered", error=None), attempts=1)
    )
    due = await outbox.oldest_due(alice.id)
    assert due is not None and due.delivery.id == newer
