"""The delivery loop: sends the outbox's messages to users' endpoints.

One task per user with messages due, so one request in flight per user, oldest message
first, users in parallel (at most ``max_concurrency`` at once). It shares nothing with
fetching but the database's short writes: a slow or silent endpoint holds only its own
user's task, bounded by ``[webhooks] timeout_seconds``.

At least once: a message is marked delivered only after a 2xx, so a crash or a cancel
between the answer and the write sends it again, with the same webhook-id.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from dataclasses import dataclass
from datetime import datetime

from rssd import metrics
from rssd.clock import parse_iso, to_iso
from rssd.logs import get_logger
from rssd.models.config import Config
from rssd.repo.db import Database
from rssd.repo.outbox import Attempt, Due, OutboxRepo
from rssd.repo.users import config_digest
from rssd.webhooks.rules import Decision, Outcome, decide
from rssd.webhooks.sender import Sender

log = get_logger("rssd.webhooks")

#: Also look for due messages this often: ``rssd fetch`` and ``rssd redeliver`` write
#: messages from another process, which cannot wake this one.
POLL_SECONDS = 5.0
#: The shortest sleep: a message due now that no pass can take (its user left config.toml
#: a moment before the sync disabled it) must not make the loop spin.
MIN_WAIT_SECONDS = 0.1


@dataclass
class DeliveryStats:
    sent: int = 0
    failed: int = 0
    dead: int = 0

    def take(self) -> tuple[int, int, int]:
        counts = (self.sent, self.failed, self.dead)
        self.sent = self.failed = self.dead = 0
        return counts


class DeliveryLoop:
    def __init__(self, db: Database, config: Config, sender: Sender) -> None:
        self.db = db
        self.repo = OutboxRepo(db)
        self.config = config
        self.sender = sender
        self.stats = DeliveryStats()
        self.random = random.Random()
        self._wake = asyncio.Event()
        self._busy: dict[int, asyncio.Task[bool]] = {}
        self._saturated = False  # users were left waiting for a free slot
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
        """Until cancelled: start a pass for every user with messages due."""
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
        """One pass over every due message (``rssd run --once``), then return."""
        try:
            await self._launch_due()
            while self._busy:
                await asyncio.wait(list(self._busy.values()))
        finally:
            await self._cancel_all()

    async def _launch_due(self) -> None:
        if not self.config.users:
            return
        self._saturated = False
        for user_id in await self.repo.due_users():
            if user_id in self._busy:
                continue
            if len(self._busy) >= self.config.max_concurrency:
                self._saturated = True  # the next finished pass wakes the loop
                break
            task = asyncio.create_task(self._user_pass(user_id), name=f"deliver-{user_id}")
            self._busy[user_id] = task
            task.add_done_callback(functools.partial(self._finished, user_id))

    def _finished(self, user_id: int, task: asyncio.Task[bool]) -> None:
        """A pass ended: look again at once, unless it found the user locked by another
        daemon (waking then would relaunch it straight away, over and over; the next
        poll or wakeup tries again)."""
        self._busy.pop(user_id, None)
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("delivery.crashed", user_id=user_id, exc_info=task.exception())
        elif not task.result():
            return
        self._wake.set()

    async def _sleep(self) -> None:
        wait = POLL_SECONDS
        upcoming = await self.repo.next_wakeup(list(self._busy))
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

    async def _user_pass(self, user_id: int) -> bool:
        """The user's due messages, oldest first, one at a time, each attempted once.

        Under the user's lock: where several daemons share the database (PostgreSQL),
        one of them sends a user's messages at a time, so no message has two senders at
        once (the others skip the user this round). On SQLite it is always free.
        False when nothing was done: the lock was taken, or this daemon may not send for
        the user (it left the config, or the config differs from the synced one).
        """
        lock = f"rssd.deliver:{user_id}"
        if not await self.db.try_lock(lock):
            return False
        try:
            after = ""
            while (due := await self.repo.oldest_due(user_id, after)) is not None:
                after = due.delivery.id
                went_on = await self._attempt(due)
                if went_on is None:
                    return False
                if not went_on:
                    break
        finally:
            await self.db.unlock(lock)
        return True

    async def _attempt(self, due: Due) -> bool | None:
        """Send one message and record the outcome; False when the endpoint got disabled
        (the pass ends); None when nothing was sent: the user left the config, or this
        daemon's entry for the user is not the synced one."""
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
        if not recorded:
            log.info("delivery.superseded", **fields)
            return True
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
            return False
        return True

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
