"""Leases of the fetches run by hand (``rssd fetch``, ``run --once``): no daemon's lease
loop renews them, so while any runs, one task renews them all with one statement (a task
per fetch was a measurable part of a ``run --once`` pass; bench/README.md). The daemon's
own claims need none of this: its lease loop (rssd/daemon/claimer.py) renews them.

Nor does a daemon's lease loop take back for them what a process killed -9 left ONGOING:
on PostgreSQL, with no daemon running, a ``run --once`` killed -9 left its jobs and their
host slots held for good, and the next one skipped those feeds and waited on those hosts
without end. A fetch by hand that finds its feed's job active, or its host's slots all
taken, first takes back the jobs whose lease expired (``take_back_expired``); a job with
no lease at all is left to Pipeline's STALE_JOB_AFTER, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from rssd.logs import get_logger
from rssd.repo.claims import LEASE_SECONDS, ClaimRepo

#: The daemon's logger: the lease events are the same whoever's leases they are.
log = get_logger("rssd.daemon")

RENEW_SECONDS = LEASE_SECONDS / 3
#: The shortest time between two take-backs by one process's fetches by hand.
TAKE_BACK_EVERY_SECONDS = RENEW_SECONDS


async def take_back_expired(claims: ClaimRepo, *, leased: bool = False) -> list[int]:
    """The ONGOING jobs whose lease expired (``leased``: not those with none) -> FAILED
    ``interrupted``, their feeds due at once; logged ``jobs.taken_back``. Returns the jobs
    taken back."""
    taken = await claims.take_back(leased=leased)
    if taken:
        log.warning("jobs.taken_back", jobs=len(taken), job_ids=taken, error_code="interrupted")
    return taken


class ManualLeases:
    def __init__(self, claims: ClaimRepo) -> None:
        self._claims = claims
        self._held = 0
        #: The renewing task while fetches run (it ends with the last of them).
        self.renewer: asyncio.Task[None] | None = None
        #: Take-backs that took back a job so far: a claim asked before the count moved
        #: may have been refused for a job taken back since (``take_back_expired``).
        self.taken_back = 0
        self._take_back: asyncio.Task[None] | None = None
        self._next_take_back = 0.0

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator[None]:
        """One fetch by hand runs inside: its lease is renewed until it ends."""
        self._held += 1
        # A renewer cancelled by the last fetch to end is not done until the loop runs it
        # again: a fetch that starts in between needs a new one, or its lease would never
        # be renewed, and would be taken back as expired while it runs.
        if self.renewer is None or self.renewer.done() or self.renewer.cancelling():
            self.renewer = asyncio.create_task(self._renew())
        try:
            yield
        finally:
            self._held -= 1
            if not self._held:
                self.renewer.cancel()

    async def _renew(self) -> None:
        while self._held:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await self._claims.renew()
            except Exception as exc:  # the fetches go on; their leases may run out
                log.error("jobs.lease_failed", error_message=repr(exc))

    async def take_back_expired(self) -> None:
        """Take back the jobs whose lease expired (``take_back_expired``), at most every
        TAKE_BACK_EVERY_SECONDS: a fetch that arrives while one runs waits for it; one
        that arrives sooner after it than that returns at once. Never raises: a failure
        is logged, and the fetch goes on as if nothing had expired."""
        if self._take_back is None or self._take_back.done():
            now = time.monotonic()
            if now < self._next_take_back:
                return
            self._next_take_back = now + TAKE_BACK_EVERY_SECONDS
            self._take_back = asyncio.create_task(self._take_back_once())
        # Shielded: a fetch cancelled while it waits does not cancel the others' take-back.
        await asyncio.shield(self._take_back)

    async def settle(self) -> None:
        """Until a take-back under way has ended: before the database closes."""
        if self._take_back is not None and not self._take_back.done():
            await asyncio.wait([self._take_back])

    async def _take_back_once(self) -> None:
        try:
            if await take_back_expired(self._claims, leased=True):
                self.taken_back += 1
        except Exception as exc:
            log.error("jobs.lease_failed", error_message=repr(exc))
