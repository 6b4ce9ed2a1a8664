"""The claim loop: take due jobs from the database, run them, keep their leases alive.

The same on both backends. Every POLL_SECONDS (or at once when a fetch of ours ends and
frees room) the daemon claims as many due jobs as it has room for; on PostgreSQL an idle
daemon instead sleeps until the next job falls due, woken early by the database's NOTIFY
when another process queues one due now (rssd/repo/pg_listen.py, ``idle_wait``). The
database decides which, so several daemons never take the same job, and the host slots
keep the per-host limit across all of them. While fetches run, their leases are renewed every
LEASE_SECONDS / 3; jobs whose lease expired (a daemon killed -9, a machine gone) are taken
back by whichever daemon looks first, and fetched again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from rssd.daemon.manual import take_back_expired
from rssd.daemon.pipeline import JobReport, Pipeline
from rssd.logs import get_logger
from rssd.repo.claims import LEASE_SECONDS, Claim, ClaimRepo
from rssd.repo.db import Database, Listening

log = get_logger("rssd.daemon")

#: How often an idle daemon looks for due jobs when nothing wakes it (SQLite; PostgreSQL
#: while its notification connection is down; due jobs held back by busy hosts).
POLL_SECONDS = 1.0
#: The longest an idle daemon that is woken by notifications sleeps: a bound on what a
#: change no notification covers (a source enabled by another daemon's config) may wait.
IDLE_SECONDS = 10.0
#: The shortest sleep: a job due in a millisecond is not worth a loop of its own.
MIN_WAIT_SECONDS = 0.05
RENEW_SECONDS = LEASE_SECONDS / 3
#: How long the beat waits for its lease round (milliseconds, unless a table is locked).
ROUND_WAIT_SECONDS = 1.0


def idle_wait(due_in: float | None) -> float:
    """How long an idle claim loop that notifications wake sleeps: until the next job
    falls due (``due_in`` seconds from now by the database's clock; None: none queued),
    at most IDLE_SECONDS. A job already due that was not claimed waits for a busy host's
    slot, which no notification announces: poll."""
    if due_in is None:
        return IDLE_SECONDS
    if due_in <= 0:
        return POLL_SECONDS
    return min(IDLE_SECONDS, max(MIN_WAIT_SECONDS, due_in))


class Claimer:
    def __init__(
        self,
        claims: ClaimRepo,
        pipeline: Pipeline,
        room: Callable[[], tuple[int, int]],
        on_done: Callable[[JobReport | BaseException | None], None],
    ) -> None:
        """``room()``: (how many jobs may run at once, max_per_host), read at each claim so
        that a reload applies. ``on_done``: a finished job's report (or its exception, or
        None when cancelled)."""
        self.claims = claims
        self.pipeline = pipeline
        self._room = room
        self._on_done = on_done
        self.in_flight: dict[int, asyncio.Task[JobReport]] = {}
        self.wake = asyncio.Event()
        #: When the claim loop last turned or, while it sleeps, when it turns next: the
        #: watchdog's sign that the scheduler is alive.
        self.heartbeat = time.monotonic()
        #: Since when the claim loop has been waiting for the database to answer (None:
        #: it is not): a loop stuck there is waiting, not hung (a table locked for long).
        self.database_wait_since: float | None = None
        self.claiming = True
        self._listening: Listening | None = None
        self._was_listening = False

    async def claim_loop(self) -> None:
        while self.claiming:
            self.heartbeat = time.monotonic()
            limit, per_host = self._room()
            free = limit - len(self.in_flight)
            got = 0
            if free > 0:
                try:
                    async with self._database_wait():
                        claimed = await self.claims.claim_due(free, per_host)
                except Exception as exc:  # the database is unreachable or busy: retry soon
                    log.error("jobs.claim_failed", error_message=repr(exc))
                    claimed = []
                got = len(claimed)
                for claim in claimed:
                    self._launch(claim)
            if got and got == free:
                continue  # there may be more due: claim again once room frees up
            self.wake.clear()
            wait = POLL_SECONDS if free <= 0 else await self._idle_wait()
            # While asleep the loop is next expected to turn at the end of its wait.
            self.heartbeat = time.monotonic() + wait
            try:
                async with asyncio.timeout(wait):
                    await self.wake.wait()
            except TimeoutError:
                pass

    def waiting_on_database(self) -> float:
        """How long the claim loop has been waiting for one database call (0: it is not)."""
        since = self.database_wait_since
        return 0.0 if since is None else time.monotonic() - since

    @contextlib.asynccontextmanager
    async def _database_wait(self) -> AsyncIterator[None]:
        self.database_wait_since = time.monotonic()
        try:
            yield
        finally:
            self.database_wait_since = None

    async def listen(self, db: Database) -> None:
        """Be woken by the database when a job falls due elsewhere (PostgreSQL's NOTIFY),
        instead of polling every POLL_SECONDS while idle."""
        self._listening = await db.listen(self.wake.set)

    async def _idle_wait(self) -> float:
        listening = self._listening is not None and self._listening.connected
        if listening != self._was_listening and self._listening is not None:
            if listening:
                log.info("jobs.listening")
            else:
                log.warning("jobs.listen_lost", error_message=self._listening.last_error)
            self._was_listening = listening
        if not listening:
            return POLL_SECONDS
        try:
            async with self._database_wait():
                due_in = await self.claims.seconds_to_next_due()
        except Exception as exc:
            log.error("jobs.claim_failed", error_message=repr(exc))
            return POLL_SECONDS
        return idle_wait(due_in)

    def _launch(self, claim: Claim) -> None:
        log.debug(
            "fetch.launched",
            source_id=claim.source.id,
            job_id=claim.job.id,
            in_flight=len(self.in_flight) + 1,
        )
        task = asyncio.create_task(self.pipeline.run_claim(claim), name=f"fetch-{claim.job.id}")
        self.in_flight[claim.job.id] = task

        def done(finished: asyncio.Task[JobReport]) -> None:
            self.in_flight.pop(claim.job.id, None)
            self.wake.set()
            if finished.cancelled():
                self._on_done(None)
            elif (exc := finished.exception()) is not None:
                self._on_done(exc)
            else:
                self._on_done(finished.result())

        task.add_done_callback(done)

    async def lease_loop(self, beat: Callable[[int], object] | None = None) -> None:
        """Renew our leases, take back expired ones; ``beat(in_flight)`` after each round.
        A round stuck on a locked fetch_job does not hold the beat back (the daemon's row
        then says it is waiting on the database): the beat goes on, and the next round
        starts once the stuck one is through."""
        leases: asyncio.Task[None] | None = None
        try:
            while True:
                await asyncio.sleep(RENEW_SECONDS)
                if leases is None or leases.done():
                    leases = asyncio.create_task(self._lease_round(), name="lease-round")
                await asyncio.wait([leases], timeout=ROUND_WAIT_SECONDS)
                if beat is None:
                    continue
                try:
                    result = beat(len(self.in_flight))
                    if asyncio.iscoroutine(result):
                        await result
                except Exception as exc:
                    log.error("jobs.lease_failed", error_message=repr(exc))
        finally:
            if leases is not None:
                leases.cancel()

    async def _lease_round(self) -> None:
        try:
            if self.in_flight:
                await self.claims.renew()
            if await take_back_expired(self.claims):
                self.wake.set()
        except Exception as exc:
            log.error("jobs.lease_failed", error_message=repr(exc))

    def stop(self) -> None:
        """No more claims: the claim loop ends after the claim it is making, if any (never
        cancelled mid-claim: the jobs it took would stay ONGOING until their lease ran
        out). What runs goes on; ``drain`` ends it."""
        self.claiming = False
        self.wake.set()

    async def drain(self, grace: float) -> None:
        """In-flight fetches get the grace period; the rest are cancelled -> interrupted."""
        self.stop()
        pending = list(self.in_flight.values())
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=grace)
        for task in still:
            task.cancel()
        if still:
            log.warning("daemon.cancelled_fetches", count=len(still))
            await asyncio.wait(still)
