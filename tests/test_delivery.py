"""The delivery loop in-process, against a real loopback receiver that verifies every
request (standardwebhooks and hmac): retries, Retry-After, 410, dead messages, order, the
guard, a receiver that goes away and comes back, and fetching not held up by a silent one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from rssd import metrics
from rssd.clock import now_iso, parse_iso, to_iso
from rssd.daemon.delivery import DeliveryLoop
from rssd.daemon.startup import sync_sources
from rssd.models.config import Config
from rssd.models.dto import FetchMeta, PostCreate
from rssd.repo.db import Database
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.outbox import OutboxRepo
from rssd.repo.users import UserRepo
from rssd.webhooks.rules import JITTER
from rssd.webhooks.sender import Sender
from tests.support.jobs import ongoing_job
from tests.support.webhooks import SECRETS, Receiver, make_config, user

pytestmark = pytest.mark.both_backends

A, B = "http://a.example/feed", "http://b.example/rss"
FAST = [0.05] * 20  # retries at once, so tests wait on events only


def post(n: int, title: str = "") -> PostCreate:
    return PostCreate(external_id=f"id-{n}", title=title or f"Post {n}", content_hash=f"h{n}")


async def fetch(db: Database, url: str, posts: list[PostCreate]) -> int:
    row = await db.fetchone("SELECT id FROM content_sources WHERE url = :url", {"url": url})
    assert row is not None
    job = await ongoing_job(db, row[0])
    recorded = await FetchJobRepo(db).mark_completed(job.id, FetchMeta(http_status=200), posts, b"")
    assert recorded is not None
    return recorded[1].messages


async def setup(
    db: Database, tmp_path: Path, receiver: Receiver, users: list[str], **webhooks: Any
) -> Config:
    feeds = {"alice": [A], "bob": [A, B], "carol": [B]}
    config = make_config(
        tmp_path,
        [A, B],
        [user(name, receiver.url(name), feeds[name], notify_backlog=True) for name in users],
        **{"retry_seconds": FAST, **webhooks},
    )
    await sync_sources(db, config)
    return config


@contextlib.asynccontextmanager
async def running(db: Database, config: Config) -> AsyncIterator[DeliveryLoop]:
    async with Sender(config.webhooks, config.user_agent) as sender:
        loop = DeliveryLoop(db, config, sender)
        task = asyncio.create_task(loop.run())
        try:
            yield loop
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def once(db: Database, config: Config) -> DeliveryLoop:
    async with Sender(config.webhooks, config.user_agent) as sender:
        loop = DeliveryLoop(db, config, sender)
        await loop.run_once()
        return loop


async def until(db: Database, check: Callable[[list[tuple[str, str, int]]], bool]) -> None:
    """Wait (a hang guard, not a timing) until the outbox passes ``check``."""
    async with asyncio.timeout(120):  # a hang guard
        while True:
            if check(await statuses(db)):
                return
            await asyncio.sleep(0.02)


async def settled(db: Database, expected: list[tuple[str, str, int]]) -> None:
    await until(db, lambda rows: rows == expected)


async def statuses(db: Database) -> list[tuple[str, str, int]]:
    rows = await db.fetchall(
        "SELECT u.name, d.status, d.attempts FROM deliveries d JOIN users u ON u.id = d.user_id "
        "ORDER BY d.id"
    )
    return [(row[0], row[1], row[2]) for row in rows]


async def test_each_subscriber_gets_its_posts_and_no_one_elses(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    config = await setup(db, tmp_path, receiver, ["alice", "bob", "carol"])
    await fetch(db, A, [post(1), post(2)])
    await fetch(db, B, [post(3)])
    loop = await once(db, config)
    assert receiver.bad == []
    assert sorted(receiver.posts_for("alice")) == ["id-1", "id-2"]
    assert sorted(receiver.posts_for("bob")) == ["id-1", "id-2", "id-3"]
    assert receiver.posts_for("carol") == ["id-3"]
    assert all(status == "delivered" for _, status, _ in await statuses(db))
    assert (loop.stats.sent, loop.stats.failed, loop.stats.dead) == (4, 0, 0)
    alice = await UserRepo(db).get("alice")
    assert alice is not None
    assert alice.last_success_at is not None
    for item in receiver.received:
        assert item.body["data"]["user"] == item.user


def attempts(outcome: str) -> float:
    """This process's rssd_webhook_deliveries_total for ``outcome``."""
    value = metrics.enable().get_sample_value("rssd_webhook_deliveries_total", {"outcome": outcome})
    return value or 0.0


async def test_retries_carry_one_webhook_id(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    async def flaky(_: web.Request, count: int) -> web.StreamResponse:
        return web.Response(status=500 if count <= 2 else 200)

    receiver.replies["alice"] = flaky
    config = await setup(db, tmp_path, receiver, ["alice"])
    before = {outcome: attempts(outcome) for outcome in ("retry", "delivered")}
    await fetch(db, A, [post(1)])
    async with running(db, config):
        await receiver.wait_for(lambda: len(receiver.received) == 1)
        await settled(db, [("alice", "delivered", 3)])
        # rssd_webhook_deliveries_total (the metrics file) counts each attempt by outcome,
        # once the attempt is recorded: the row may be seen a moment before the count.
        async with asyncio.timeout(120):  # a hang guard
            while True:
                if attempts("delivered") - before["delivered"] >= 1:
                    break
                await asyncio.sleep(0.02)
    assert attempts("retry") - before["retry"] == 2
    assert attempts("delivered") - before["delivered"] == 1
    assert receiver.bad == []
    ids = {webhook_id for _, webhook_id in receiver.ids}
    assert len(receiver.ids) == 3
    assert ids == {receiver.received[0].webhook_id}
    assert await statuses(db) == [("alice", "delivered", 3)]


async def test_the_last_attempt_makes_a_message_dead(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    async def broken(_: web.Request, __: int) -> web.StreamResponse:
        return web.Response(status=500)

    receiver.replies["alice"] = broken
    config = await setup(db, tmp_path, receiver, ["alice"], retry_seconds=[0.05, 0.05])
    await fetch(db, A, [post(1)])
    async with running(db, config) as loop:
        await settled(db, [("alice", "dead", 3)])
    assert await statuses(db) == [("alice", "dead", 3)]
    assert loop.stats.dead == 1
    row = await db.fetchone("SELECT last_error, last_http_status FROM deliveries")
    assert row is not None
    assert (row[0], row[1]) == ("HTTP 500", 500)


async def test_retry_after_is_honoured(db: Database, tmp_path: Path, receiver: Receiver) -> None:
    """The schedule says an hour; the receiver says 1 second: the message arrives."""

    async def busy(_: web.Request, count: int) -> web.StreamResponse:
        if count == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.Response(status=204)

    receiver.replies["alice"] = busy
    config = await setup(db, tmp_path, receiver, ["alice"], retry_seconds=[3600.0])
    await fetch(db, A, [post(1)])
    async with running(db, config):
        await settled(db, [("alice", "delivered", 2)])
    assert len(receiver.received) == 1


async def test_a_user_held_by_another_sender_does_not_wake_the_loop(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    """Another daemon's turn holds the user (its lease in the users row): no turn here
    sends anything, none wakes the loop (that would relaunch it at once, in a spin), and
    the loop sleeps until the lease ends. Once it has ended, a turn sends and wakes it."""
    config = await setup(db, tmp_path, receiver, ["alice"])
    await fetch(db, A, [post(1)])
    held_until = datetime.now(UTC) + timedelta(hours=1)
    await db.write_one(
        "UPDATE users SET sender = 'another', sender_until = :until",
        {"until": to_iso(held_until)},
    )
    async with Sender(config.webhooks, config.user_agent) as sender:
        loop = DeliveryLoop(db, config, sender, "this")
        assert await loop.repo.due_users("this") == []
        assert [u.user_id for u in await loop.repo.due_users("another")] != []
        assert not await loop.repo.take_turn(1, "this", 60.0)
        upcoming = await loop.repo.next_wakeup("this")
        assert upcoming is not None
        assert abs(parse_iso(upcoming) - held_until) < timedelta(seconds=1)
        await loop._launch_due()
        assert loop._busy == {}
        assert not loop._wake.is_set()
        assert receiver.attempts == {}
        await db.write_one(
            "UPDATE users SET sender_until = :past", {"past": "2000-01-01T00:00:00.000Z"}
        )
        await loop._launch_due()
        turns = list(loop._busy.values())
        assert len(turns) == 1
        await asyncio.wait(turns)
        assert loop._wake.is_set()
    assert await statuses(db) == [("alice", "delivered", 1)]
    row = await db.fetchone("SELECT sender, sender_until FROM users")
    assert row is not None and (row[0], row[1]) == (None, None), "the lease is given back"


async def test_410_disables_the_endpoint_and_an_enable_resumes(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    gone = True

    async def maybe_gone(_: web.Request, __: int) -> web.StreamResponse:
        return web.Response(status=410 if gone else 204)

    receiver.replies["alice"] = maybe_gone
    config = await setup(db, tmp_path, receiver, ["alice", "bob"])
    await fetch(db, A, [post(1)])
    await fetch(db, A, [post(2)])
    await once(db, config)
    await once(db, config)  # disabled: not tried again
    assert receiver.attempts["alice"] == 1
    alice = await UserRepo(db).get("alice")
    assert alice is not None
    assert alice.disabled_reason == "gone"
    assert [s for s in await statuses(db) if s[0] == "alice"] == [
        ("alice", "pending", 1),
        ("alice", "pending", 0),
    ], "a disabled endpoint keeps its messages"
    assert sorted(receiver.posts_for("bob")) == ["id-1", "id-2"], "other users unaffected"
    await fetch(db, A, [post(3)])  # while disabled: not queued for alice
    gone = False
    await UserRepo(db).enable_endpoint("alice")
    await once(db, config)
    assert receiver.posts_for("alice") == ["id-1", "id-2"]


async def test_a_redirect_is_a_failure(db: Database, tmp_path: Path, receiver: Receiver) -> None:
    async def moved(_: web.Request, __: int) -> web.StreamResponse:
        return web.Response(status=301, headers={"Location": receiver.url("bob")})

    receiver.replies["alice"] = moved
    config = await setup(db, tmp_path, receiver, ["alice"], retry_seconds=[3600.0])
    await fetch(db, A, [post(1)])
    await once(db, config)
    assert receiver.attempts == {"alice": 1}
    row = await db.fetchone("SELECT status, last_error FROM deliveries")
    assert row is not None
    assert (row[0], row[1]) == ("pending", "HTTP 301: redirect not followed")


async def test_private_addresses_are_refused_without_a_request(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    config = await setup(
        db, tmp_path, receiver, ["alice"], allow_private_networks=False, retry_seconds=[3600.0]
    )
    await fetch(db, A, [post(1)])
    loop = await once(db, config)
    assert receiver.attempts == {}
    assert loop.stats.failed == 1
    alice = await UserRepo(db).get("alice")
    assert alice is not None
    assert alice.last_error is not None
    assert alice.last_error.startswith("refused: 127.0.0.1 is a loopback address")


async def test_one_request_per_user_oldest_first(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    async def held(_: web.Request, attempt: int) -> web.StreamResponse:
        """Alice's first request is answered only once bob has all his six messages: a
        window in which the loop, sending bob's one after another, would also have sent
        alice's others had it not held them back."""
        if attempt == 1:
            await receiver.wait_for(lambda: len(receiver.posts_for("bob")) == 6)
        return web.Response(status=204)

    receiver.replies["alice"] = held
    config = await setup(db, tmp_path, receiver, ["alice", "bob"])
    for n in range(6):
        await fetch(db, A, [post(n)])
    await once(db, config)
    assert receiver.most_active == 1
    assert receiver.posts_for("alice") == [f"id-{n}" for n in range(6)]
    order = [webhook_id for name, webhook_id in receiver.ids if name == "alice"]
    assert order == sorted(order)


async def test_a_receiver_down_for_a_while_gets_everything_after(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    config = await setup(db, tmp_path, receiver, ["alice"])
    await receiver.stop()  # connection refused from now on
    await fetch(db, A, [post(1)])
    await fetch(db, A, [post(2)])
    async with running(db, config) as loop:
        # Oldest first through the outage: only the oldest message is retried; the newer
        # one waits behind it with its attempts unspent.
        await until(db, lambda rows: [attempts >= 2 for _, _, attempts in rows] == [True, False])
        assert [attempts for _, _, attempts in await statuses(db)][1] == 0
        assert loop.stats.failed >= 2
        await receiver.start()  # the same port
        await fetch(db, A, [post(3)])
        loop.poke()
        await receiver.wait_for(lambda: len(receiver.received) == 3)
    assert receiver.posts_for("alice") == ["id-1", "id-2", "id-3"]  # in order
    assert receiver.bad == []


async def test_a_silent_receiver_does_not_hold_up_fetching(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    """While alice's request hangs unanswered, fetches complete and bob is served."""
    release = asyncio.Event()

    async def silent(_: web.Request, __: int) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=204)

    receiver.replies["alice"] = silent
    config = await setup(db, tmp_path, receiver, ["alice", "bob"], timeout_seconds=300)
    await fetch(db, A, [post(1)])
    try:
        async with running(db, config) as loop:
            await receiver.wait_for(lambda: receiver.active.get("alice") == 1)
            for n in range(2, 6):
                assert await fetch(db, B, [post(n)]) == 1  # bob's feed, alice's hanging
            loop.poke()
            await receiver.wait_for(lambda: len(receiver.posts_for("bob")) == 5)
            assert receiver.active.get("alice") == 1, "still unanswered all along"
    finally:
        release.set()


async def test_bodies_are_the_stored_bytes(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    config = await setup(db, tmp_path, receiver, ["alice"])
    await fetch(db, A, [post(1, "caf\u00e9 \u2603")])
    await once(db, config)
    row = await db.fetchone("SELECT body FROM deliveries")
    assert row is not None
    assert receiver.received[0].body == json.loads(row[0])
    assert receiver.received[0].body["data"]["posts"][0]["title"] == "café ☃"


async def test_prune_keeps_what_is_still_owed(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    async def broken(_: web.Request, __: int) -> web.StreamResponse:
        return web.Response(status=500)

    config = await setup(db, tmp_path, receiver, ["alice", "bob"])
    receiver.replies["bob"] = broken
    await fetch(db, A, [post(1)])
    await once(db, config)
    repo = OutboxRepo(db)
    assert await repo.prune("2000-01-01T00:00:00.000Z") == 0, "nothing that old"
    assert await repo.prune("9999-01-01T00:00:00.000Z") == 1
    assert await statuses(db) == [("bob", "pending", 1)]


async def test_a_daemon_with_an_older_config_sends_nothing_for_the_user(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    """The database holds alice's new entry (URL and secret); a daemon still running the
    old config.toml (its reload refused as drift, say) must not send her messages to the
    old URL signed with the old secret: it leaves them to a daemon with the current entry."""
    config = await setup(db, tmp_path, receiver, ["alice"])
    await fetch(db, A, [post(1)])
    old_alice = user("alice", receiver.url("alice") + "?old=1", [A], notify_backlog=True)
    old_alice["secret"] = SECRETS["carol"]
    old = make_config(tmp_path, [A, B], [old_alice], retry_seconds=FAST)
    with capture_logs() as logs:
        await once(db, old)
    assert receiver.attempts == {}
    assert receiver.bad == []
    assert await statuses(db) == [("alice", "pending", 0)]
    assert [e["user"] for e in logs if e["event"] == "delivery.config_stale"] == ["alice"]
    await once(db, config)
    assert await statuses(db) == [("alice", "delivered", 1)]
    assert receiver.bad == []
    assert len(receiver.received) == 1


async def test_a_failed_delivery_is_due_again_on_the_retry_schedule(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    """The stored ``next_attempt_at`` after each failure is the attempt's time plus that
    attempt's ``retry_seconds`` entry, within the jitter (rssd.webhooks.rules)."""

    async def down(_: web.Request, __: int) -> web.StreamResponse:
        return web.Response(status=500)

    receiver.replies["alice"] = down
    schedule = [600.0, 7200.0]
    config = await setup(db, tmp_path, receiver, ["alice"], retry_seconds=schedule)
    await fetch(db, A, [post(1)])
    for attempt, seconds in enumerate(schedule, start=1):
        await once(db, config)
        row = await db.fetchone(
            "SELECT status, attempts, last_attempt_at, next_attempt_at FROM deliveries"
        )
        assert row is not None
        assert (row["status"], row["attempts"]) == ("pending", attempt)
        waited = (
            parse_iso(row["next_attempt_at"]) - parse_iso(row["last_attempt_at"])
        ).total_seconds()
        assert seconds * (1 - JITTER) - 0.01 <= waited <= seconds * (1 + JITTER) + 0.01, waited
        await db.write(  # due now: the next pass makes the next attempt
            lambda tx: tx.execute(
                "UPDATE deliveries SET next_attempt_at = :now", {"now": now_iso()}
            )
        )
    assert receiver.attempts == {"alice": len(schedule)}


async def test_slow_endpoints_cannot_take_every_slot(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    """Four endpoints that never answer in time, retried at once each time, and two
    slots: once they are known to be slow they share one slot, and alice's message goes
    out after at most one timed-out attempt of each (and one more in the shared slot),
    not when the dead endpoints happen to leave both slots free (never, here)."""

    async def silent(_: web.Request, __: int) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response(status=204)

    dead = ["bob", "carol", "dave", "erin"]
    for name in dead:
        receiver.replies[name] = silent
    config = make_config(
        tmp_path,
        [A, B],
        [
            *(user(name, receiver.url(name), [B], notify_backlog=True) for name in dead),
            user("alice", receiver.url("alice"), [A], notify_backlog=True),
        ],
        retry_seconds=[0.05] * 50,
        timeout_seconds=1.0,
    )
    config = replace(config, max_concurrency=2)
    await sync_sources(db, config)
    await fetch(db, B, [post(1)])
    async with running(db, config) as loop:
        # Both slots taken by dead endpoints, then alice's message arrives.
        await receiver.wait_for(lambda: sum(receiver.active.values()) == 2)
        await fetch(db, A, [post(9)])
        loop.poke()
        await receiver.wait_for(lambda: receiver.posts_for("alice") != [], deadline=60)
    slow_attempts = sum(receiver.attempts.get(name, 0) for name in dead)
    assert receiver.posts_for("alice") == ["id-9"]
    assert slow_attempts <= len(dead) + 1, receiver.attempts


async def test_a_429_pauses_the_endpoint_not_only_the_message(
    db: Database, tmp_path: Path, receiver: Receiver
) -> None:
    """Retry-After: 3600 on the first of three messages: nothing more is sent to the
    endpoint before then (the issue saw 7 requests in 4 s after asking for 24 h), also
    when that was the message's last attempt and the next message moves up."""

    async def later(_: web.Request, __: int) -> web.StreamResponse:
        return web.Response(status=429, headers={"Retry-After": "3600"})

    receiver.replies["alice"] = later
    config = await setup(db, tmp_path, receiver, ["alice"], retry_seconds=[60.0])
    for n in range(3):
        await fetch(db, A, [post(n)])
    await db.write_one("UPDATE deliveries SET attempts = 1")  # the next attempt is the last
    await once(db, config)
    await once(db, config)
    assert receiver.attempts == {"alice": 1}
    row = await db.fetchone("SELECT paused_until FROM users WHERE name = 'alice'")
    assert row is not None and row[0] is not None
    paused = parse_iso(row[0]) - await db.now()
    assert timedelta(minutes=59) < paused <= timedelta(hours=1)
    upcoming = await OutboxRepo(db).next_wakeup("any")
    assert upcoming == row[0]
