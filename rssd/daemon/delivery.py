"""The delivery loop: sends the outbox's messages to users' endpoints.

Turns, not passes: a turn is one attempt, the oldest due message of one user, after which
the user waits for its next turn behind the others (least recently served first). So one
request per user is in flight, and a user with a long backlog cannot hold a slot for
longer than one attempt. Of the ``max_concurrency`` slots, users whose endpoint is failing
or slow take at most half (at least one): the other half always serves working
endpoints, so dead receivers cannot stall everyone else's deliveries.

A turn holds the user's lease in the database (``users.sender``, ``sender_until``, by the
database's clock), like a fetch job's: whatever daemon, whatever happens to its
connections, one sender per user at a time, so no message has two senders at once. The
lease outlasts the attempt's bound (``[webhooks] timeout_seconds``) by LEASE_MARGIN_SECONDS;
one left by a killed daemon expires by itself. An endpoint that answers 429 or 503 with a
Retry-After is paused (``users.paused_until``): no daemon sends it anything before then.

At least once: a message is marked delivered only after a 2xx, so a crash or a cancel
between the answer and the write sends it again, with the same webhook-id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import secrets
import socket
import time
from datetime import datetime

from msgspec import Struct

from rssd import metrics
from rssd.clock import parse_iso, to_iso
from rssd.logs import get_logger
from rssd.models.config import Config
from rssd.repo.db import Database, shielded
from rssd.repo.outbox import Attempt, Due, OutboxRepo
from rssd.repo.users import config_digest
from rssd.webhooks.rules import Decision, Outcome, decide
from rssd.webhooks.sender import Sender

log = get_logger("rssd.webhooks")

#: Also look for due messages this often: ``rssd fetch`` and ``rssd redeliver`` write
#: messages from another process, which cannot wake this one.
POLL_SECONDS = 5.0
#: The shortest sleep: a message due now that no turn can take (its user left config.toml
#: a moment before the sync disabled it) must not make the loop spin.
MIN_WAIT_SECONDS = 0.1
#: A turn's lease lasts the attempt's time bound plus this: room for the writes around it
#: and a busy event loop, never for a second sender while the first may still be sending.
LEASE_MARGIN_SECONDS = 30.0
#: An attempt slower than this (or failed) makes its user "slow" until one is not: slow
#: users share at most half of the slots.
SLOW_SECONDS = 2.0


def slow_slots(max_concurrency: int) -> int:
    """How many of the slots failing or slow endpoints may hold at once."""
    return max(1, max_concurrency // 2)


class DeliveryStats(Struct):
    sent: int = 0
    failed: int = 0
    dead: int = 0

    def take(self) -> tuple[int, int, int]:
        counts = (self.sent, self.failed, self.dead)
        self.sent = self.failed = self.dead = 0
        return counts


class DeliveryLoop:
    def __init__(
        self, db: Database, config: Config, sender: Sender, holder: str | None = None
    ) -> None:
        self.db = db
        self.repo = OutboxRepo(db)
        self.config = config
        self.sender = sender
        #: Whose name the users' leases are taken in: the daemon's id.
        self.holder = holder or f"{socket.gethostname()}:{secrets.token_hex(4)}"
        self.stats = DeliveryStats()
        self.random = random.Random()
        self._wake = asyncio.Event()
        self._busy: dict[int, asyncio.Task[bool]] = {}
        self._busy_slow: set[int] = set()  # the busy users that count as slow
        self._saturated = False  # users were left waiting for a free slot
        #: Users whose last attempt here failed or was slow.
        self._slow: set[int] = set()
        #: When each user's last turn started (monotonic): the turn order.
        self._turns: dict[int, float] = {}
        #: ``run_once``: users done for this run (nothing more to try), and each user's
        #: last message tried, so each message is attempted once.
        self._once: set[int] | None = None
        self._after: dict[int, str] = {}
        #: Users whose synced entry differs from this daemon's config (logged once).
        self._stale_users: set[str] = set()

    def poke(self) -> None:
        """New messages were queued: look now rather than at the next poll."""
        self._wake.set()

    async def reconfigure(self, config: Config) -> None:
        self.config = config
        self._stale_users.clear()
        await self.sender.reconfigure(config.webhooks, config.user_agent)
        self.poke()

    @property
    def in_flight(self) -> int:
        return len(self._busy)

    async def run(self) -> None:
        """Until cancelled: start a turn for every user with messages due, slots allowing."""
        try:
            while True:
                self._wake.clear()
                try:
                    await self._launch_due()
                    await self._sleep()
                except Exception as exc:  # the database refused a read: try again later
                    log.error("delivery.loop_error", error_message=f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(POLL_SECONDS)
        finally:
            await self._cancel_all()

    async def run_once(self) -> None:
        """Every due message attempted once (``rssd run --once``), then return."""
        self._once, self._after = set(), {}
        try:
            while True:
                await self._launch_due()
                if not self._busy:
                    return
                await asyncio.wait(list(self._busy.values()), return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self._cancel_all()
            self._once = None

    async def _launch_due(self) -> None:
        """Turns for the due users, least recently served first; slow users in at most
        ``slow_slots`` of the slots."""
        if not self.config.users:
            return
        self._saturated = False
        slots = self.config.max_concurrency
        slow_cap = slow_slots(slots)
        due = await self.repo.due_users(self.holder)
        due.sort(key=lambda user: self._turns.get(user.user_id, 0.0))  # stable: oldest first
        for user in due:
            user_id = user.user_id
            if user_id in self._busy or (self._once is not None and user_id in self._once):
                continue
            if len(self._busy) >= slots:
                self._saturated = True  # the next finished turn wakes the loop
                break
            slow = user.failing or user_id in self._slow
            if slow and len(self._busy_slow) >= slow_cap:
                self._saturated = True
                continue
            task = asyncio.create_task(self._turn(user_id), name=f"deliver-{user_id}")
            self._busy[user_id] = task
            if slow:
                self._busy_slow.add(user_id)
            task.add_done_callback(functools.partial(self._finished, user_id))

    def _finished(self, user_id: int, task: asyncio.Task[bool]) -> None:
        """A turn ended: look again at once, unless it did nothing (another daemon holds
        the user, or this one may not send for it: waking would relaunch it straight
        away, over and over; the next poll or wakeup tries again)."""
        self._busy.pop(user_id, None)
        self._busy_slow.discard(user_id)
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("delivery.crashed", user_id=user_id, exc_info=task.exception())
        elif not task.result():
            if self._once is not None:
                self._once.add(user_id)
            return
        self._wake.set()

    async def _sleep(self) -> None:
        wait = POLL_SECONDS
        upcoming = await self.repo.next_wakeup(self.holder, list(self._busy))
        if upcoming is not None and not self._saturated:
            until = (parse_iso(upcoming) - await self.db.now()).total_seconds()
            wait = min(wait, max(MIN_WAIT_SECONDS, until))
        try:
            async with asyncio.timeout(wait):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _cancel_all(self) -> None:
        tasks = list(self._busy.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _turn(self, user_id: int) -> bool:
        """One attempt: the user's oldest due message, under the user's lease. False when
        nothing was done: another sender holds the user or its endpoint is paused, nothing
        is due, or this daemon may not send for the user (it left the config, or the
        config differs from the synced one)."""
        self._turns[user_id] = time.monotonic()
        lease = self.config.webhooks.timeout_seconds + LEASE_MARGIN_SECONDS
        if not await self.repo.take_turn(user_id, self.holder, lease):
            return False
        recorded = False  # the record gives the lease back in its own transaction
        try:
            after = self._after.get(user_id, "") if self._once is not None else ""
            due = await self.repo.oldest_due(user_id, after)
            if due is None:
                return False
            if self._once is not None:
                self._after[user_id] = due.delivery.id
            started = time.monotonic()
            decision = await self._attempt(due)
            if decision is None:
                return False
            recorded = True
            if decision.outcome is Outcome.DELIVERED and (
                time.monotonic() - started < SLOW_SECONDS
            ):
                self._slow.discard(user_id)
            else:
                self._slow.add(user_id)
            return True
        finally:
            if not recorded:
                with contextlib.suppress(Exception):  # the database is away: it expires
                    await shielded(self.repo.end_turn(user_id, self.holder))

    async def _attempt(self, due: Due) -> Decision | None:
        """Send one message and record the outcome; None when nothing was sent: the user
        left the config, or this daemon's entry for the user is not the synced one."""
        delivery = due.delivery
        user = next((u for u in self.config.users if u.name == delivery.user_name), None)
        if user is None:
            return None  # removed from config.toml: the next sync disables the user
        if config_digest(user) != due.config_digest:
            self._stale(user.name)
            return None
        started = time.monotonic()
        # The entry is the synced one (the digests agree): its URL and secret are current.
        answer = await self.sender.deliver(user, delivery.id, due.body)
        # The database's clock: the retry time and failing_since are for every daemon.
        now = await self.db.now()
        attempt = delivery.attempts + 1
        decision = decide(
            answer,
            attempt,
            retry_seconds=self.config.webhooks.retry_seconds,
            now=now,
            failing_since=parse_iso(due.failing_since) if due.failing_since else None,
            jitter=self.random.random(),
        )
        recorded = await self.repo.record(
            Attempt(
                delivery_id=delivery.id,
                user_id=delivery.user_id,
                attempts=delivery.attempts,
                at=to_iso(now),
                status=_status(decision),
                next_attempt_at=to_iso(decision.next_attempt_at or now),
                http_status=answer.status,
                error=decision.error,
                disable=decision.disable.value if decision.disable else None,
                pause_until=to_iso(decision.pause_until) if decision.pause_until else None,
                holder=self.holder,
            )
        )
        fields = {
            "user": delivery.user_name,
            "delivery_id": delivery.id,
            "source_id": delivery.content_source_id,
            "source_name": delivery.source_name,
            "posts": delivery.posts_count,
            "attempt": attempt,
            "http_status": answer.status,
            "duration_ms": int((time.monotonic() - started) * 1000),
        }
        if decision.pause_until is not None:
            log.info(
                "endpoint.paused",
                user=delivery.user_name,
                http_status=answer.status,
                until=to_iso(decision.pause_until),
            )
        if not recorded:
            log.info("delivery.superseded", **fields)
            return decision
        self._log(decision, fields, now)
        if decision.disable is not None:
            log.warning(
                "endpoint.disabled",
                user=delivery.user_name,
                reason=decision.disable.value,
                error_message=decision.error,
                detail="messages are kept; change the user's config entry or run "
                f"`rssd users --enable {delivery.user_name}` to deliver again",
            )
        return decision

    def _stale(self, name: str) -> None:
        """This daemon's entry for the user is not the one the database synced (an older
        config.toml, refused as drift; or a newer one not synced yet): its URL or secret
        may be the old one, so it sends nothing for the user. Logged once per state."""
        if name in self._stale_users:
            return
        self._stale_users.add(name)
        log.warning(
            "delivery.config_stale",
            user=name,
            detail="this daemon's config entry for the user differs from the synced one "
            "(config.toml older or not yet synced); its messages are left to daemons "
            "with the current config",
        )

    def _log(self, decision: Decision, fields: dict[str, object], now: datetime) -> None:
        metrics.WEBHOOK_DELIVERIES.labels(decision.outcome.value).inc()
        if decision.outcome is Outcome.DELIVERED:
            self.stats.sent += 1
            log.info("delivery.sent", **fields)
        elif decision.outcome is Outcome.RETRY:
            self.stats.failed += 1
            assert decision.next_attempt_at is not None
            log.warning(
                "delivery.failed",
                **fields,
                error_message=decision.error,
                next_attempt_at=to_iso(decision.next_attempt_at),
                retry_in_s=round((decision.next_attempt_at - now).total_seconds(), 1),
            )
        else:
            self.stats.dead += 1
            log.error("delivery.dead", **fields, error_message=decision.error)


def _status(decision: Decision) -> str:
    return {
        Outcome.DELIVERED: "delivered",
        Outcome.RETRY: "pending",
        Outcome.DEAD: "dead",
    }[decision.outcome]
