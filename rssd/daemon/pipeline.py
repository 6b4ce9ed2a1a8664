"""One fetch attempt end to end: a claimed job, the fetch, the outcome recorded, one event.

Shared by ``rssd run`` (jobs the claim loop took) and ``rssd fetch``/``run --once`` (a job
claimed for one source) so all go through the same guards: the one-active-job index refuses
a duplicate, and the posts, the COMPLETED mark and the source's next QUEUED job are written
in one transaction.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from msgspec import Struct
from msgspec.structs import replace

from rssd import metrics
from rssd.clock import parse_iso, to_iso, utcnow
from rssd.daemon.hand_claims import HandClaims
from rssd.daemon.manual import ManualLeases
from rssd.daemon.schedule import (
    RATE_WINDOW,
    Activity,
    Carried,
    Ending,
    Hints,
    Plan,
    Policy,
    activity_of,
    plan_next,
    policy_of,
)
from rssd.daemon.slots import FIRST_WAIT_SECONDS, HELD_WAIT_SECONDS, SlotWaits, next_wait
from rssd.fetch.fetcher import Fetcher, FetchResult, Outcome, Validators
from rssd.logs import get_logger
from rssd.models.delays import retry_after
from rssd.models.dto import ErrorCode, FetchJobStatus, FetchMeta, Source
from rssd.models.redact import redact, redact_optional
from rssd.models.same_feed import FeedIndex
from rssd.net.hosts import host_key
from rssd.repo.claims import Claim, ClaimRepo, HostBusy
from rssd.repo.daemons import new_identity
from rssd.repo.db import Database
from rssd.repo.hosts import HostRepo
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.posts import dated_posts
from rssd.repo.seen import load_seen
from rssd.repo.sources import SourceRepo, SourcesVersion
from rssd.repo.transitions import NextJob

log = get_logger("rssd.fetch")

#: An active job older than this cannot be running any more (a fetch is bounded by its
#: timeouts): it is failed so the source can move on. (Jobs under a lease are taken back
#: sooner, when the lease expires: rssd/repo/claims.py.)
STALE_JOB_AFTER = timedelta(hours=1)
#: A request whose host cannot take it for longer than this (paused by another feed's
#: 429 after the job was claimed) is not waited for: the job is given back
#: (``interrupted``), and the claims skip the host until its pause ends.
MAX_TURN_WAIT = 30.0


class HostPaused(Exception):
    """The host of a claimed job was paused meanwhile (see MAX_TURN_WAIT)."""

    def __init__(self, host: str, seconds: float) -> None:
        super().__init__(f"host {host} paused for {seconds:.0f} s more (a 429/503 Retry-After)")


class JobReport(Struct, frozen=True):
    """What one attempt did: for the summary, the scheduler and ``rssd fetch``'s output."""

    source_id: int
    url: str
    job_id: int | None
    status: FetchJobStatus | None  # None: skipped, another job for the source is active
    error_code: ErrorCode | None = None
    error_message: str | None = None
    http_status: int | None = None
    posts_new: int = 0
    posts_updated: int = 0
    messages: int = 0  # webhook messages queued with the new posts
    duration_ms: int = 0
    result: FetchResult | None = None

    @property
    def skipped(self) -> bool:
        return self.status is None


class Pipeline:
    def __init__(
        self,
        db: Database,
        fetcher: Fetcher,
        claims: ClaimRepo | None = None,
        policy: Callable[[Source, Activity | None], Policy] | None = None,
    ) -> None:
        """``claims``: the daemon's (its lease loop renews them); without, this pipeline
        claims under an id of its own and renews each lease while its fetch runs.
        ``policy``: a source's scheduling policy (default: ``policy_of``)."""
        self.policy = policy or policy_of
        self.db = db
        self.jobs = FetchJobRepo(db)
        self.claims = claims or ClaimRepo(db, f"{new_identity().id}:manual")
        #: The leases of the fetches run by hand, when no daemon's lease loop renews them.
        self.manual = None if claims else ManualLeases(self.claims)
        #: Fetches by hand waiting for a slot of their host (rssd/daemon/slots.py).
        self._slot_waits = SlotWaits()
        #: Claims by hand, batched (rssd/daemon/hand_claims.py).
        self._hand = HandClaims(self.claims, fetcher.config.max_per_host, self._orphaned)
        self.fetcher = fetcher
        self.random = random.Random()
        #: The last successful fetch's validators per source, kept in step as jobs
        #: complete, so a fetch needs no query for them (one statement fewer per fetch).
        self._validators: dict[int, Validators] | None = None
        self.sources = SourceRepo(db)
        self.hosts = HostRepo(db)
        #: What this pipeline recorded on content_sources since the Source rows it is
        #: handed were read (the daemon keeps those until a reload): discovered feed URL
        #: and the feed's title, by source id.
        self._feed_urls: dict[int, str | None] = {}
        #: Pages whose feed is configured too, already logged (``source.duplicate``).
        self._told_twice: set[int] = set()
        #: ``_feed_index``'s, with the sources' version it was read at.
        self._index: tuple[SourcesVersion, FeedIndex] | None = None
        self._titles: dict[int, str | None] = {}

    async def preload(self) -> None:
        """Read every source's validators in one query; until then each fetch asks."""
        latest = await self.jobs.latest_validators()
        self._validators = {sid: Validators(*values) for sid, values in latest.items()}

    async def _validators_for(self, source_id: int) -> Validators:
        if self._validators is None:
            return Validators.from_job(await self.jobs.get_latest_completed(source_id))
        return self._validators.get(source_id, Validators())

    async def run(self, source: Source, fetch_url: str | None = None) -> JobReport:
        """Fetch ``source`` now, by hand: its QUEUED job claimed whatever its due time, or a
        new one; from ``fetch_url`` if given (where the feed moved), else from where the
        schedule says. Never raises, except CancelledError (after recording it). Every
        ending is counted in the metrics."""
        return await _metered(self._run_by_hand(source, fetch_url))

    async def run_claim(self, claim: Claim) -> JobReport:
        """Fetch a job this process holds (ONGOING under its lease) and record the outcome.
        Never raises, except CancelledError (after recording it). Counted in the metrics."""
        return await _metered(self._run_claim(claim))

    async def _run_by_hand(self, source: Source, fetch_url: str | None) -> JobReport:
        try:
            claim = await self._claim(source)
        except Exception as exc:  # the database refused the write (locked too long, full)
            message = f"cannot queue a fetch job: {type(exc).__name__}: {exc}"
            report = JobReport(
                source.id, source.url, None, FetchJobStatus.FAILED, ErrorCode.INTERNAL, message
            )
            self._log_ending(source, report, error=True)
            return report
        if claim is None:
            log.info("fetch.skipped", source_id=source.id, url=source.url, reason="job_active")
            return JobReport(source.id, source.url, None, None)
        # The claim holds the slot of its configured host it reserved (_claim_in_a_slot);
        # a source that moved fetches from, and took a slot of, another host.
        slot_host = host_key(claim.fetch_url or claim.source.url)
        if slot_host != (reserved := host_key(source.url)):
            self._slot_waits.freed(reserved)
            self._slot_waits.taken(slot_host)
        if fetch_url is not None:
            claim = replace(claim, fetch_url=fetch_url)
        try:
            if self.manual is None:
                return await self._run_claim(claim)
            async with self.manual.holding():
                return await self._run_claim(claim)
        finally:  # its slot is free again: the longest waiter for it tries
            self._slot_waits.freed(slot_host)

    async def _run_claim(self, claim: Claim) -> JobReport:
        source, job = claim.source, claim.job
        started = time.monotonic()
        try:
            return await self._attempt(claim, started)
        except HostPaused as exc:
            await self._fail(claim, ErrorCode.INTERRUPTED, str(exc), interrupted=True)
            log.info("fetch.deferred", source_id=source.id, job_id=job.id, detail=str(exc))
            return JobReport(
                source.id,
                source.url,
                job.id,
                FetchJobStatus.FAILED,
                ErrorCode.INTERRUPTED,
                str(exc),
                duration_ms=_ms(started),
            )
        except asyncio.CancelledError:
            cancelled = "fetch cancelled (shutdown)"
            await self._fail(claim, ErrorCode.INTERRUPTED, cancelled, interrupted=True)
            self._log_ending(
                source,
                JobReport(
                    source.id,
                    source.url,
                    job.id,
                    FetchJobStatus.FAILED,
                    ErrorCode.INTERRUPTED,
                    cancelled,
                    duration_ms=_ms(started),
                ),
            )
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            await self._fail(claim, ErrorCode.INTERNAL, message)
            report = JobReport(
                source.id,
                source.url,
                job.id,
                FetchJobStatus.FAILED,
                ErrorCode.INTERNAL,
                message,
                duration_ms=_ms(started),
            )
            self._log_ending(source, report, error=True, exc_info=True)
            return report

    def _log_ending(
        self,
        source: Source,
        report: JobReport,
        *,
        error: bool = False,
        exc_info: bool = False,
        **details: object,
    ) -> None:
        """The one event that says how a job ended: ``fetch.completed`` (info) or
        ``fetch.failed`` (warning; ``error``: at error level, rssd's fault rather than the
        feed's; ``exc_info``: with the traceback), the same fields every time, plus what
        the fetch got to know (``details``: http_status, bytes, posts...)."""
        fields: dict[str, object] = {
            "source_id": source.id,
            "source_name": self.name_of(source),
            "job_id": report.job_id,
            "url": source.url,
            "duration_ms": report.duration_ms,
            **details,
            "error_code": report.error_code.value if report.error_code else None,
        }
        if report.status is FetchJobStatus.COMPLETED:
            log.info("fetch.completed", **fields)
        elif error:
            log.error(
                "fetch.failed", error_message=report.error_message, exc_info=exc_info, **fields
            )
        else:
            log.warning("fetch.failed", error_message=report.error_message, **fields)

    async def _claim(self, source: Source) -> Claim | None:
        """Claim the source in a free slot of its host, waiting for one while every slot
        is taken; an active job older than STALE_JOB_AFTER is failed first.

        Such a job is left over from a write that failed twice (a database locked or full
        at the worst moment): without this the source would stay blocked until a restart.
        """
        manual = self.manual
        taken_back = manual.taken_back if manual is not None else 0
        claim = await self._claim_in_a_slot(source)
        if claim is None and manual is not None:
            # Its job may be one a process killed -9 left ONGOING, its lease run out.
            await manual.take_back_expired()
            if manual.taken_back != taken_back:
                claim = await self._claim_in_a_slot(source)
        if claim is None:
            cutoff = to_iso(await self.db.now() - STALE_JOB_AFTER)
            if await self.jobs.fail_stale(source.id, cutoff):
                log.warning("jobs.stale_failed", source_id=source.id, url=source.url)
                claim = await self._claim_in_a_slot(source)
        return claim

    async def _claim_in_a_slot(self, source: Source) -> Claim | None:
        """The source's claim, holding a slot of its configured host in ``_slot_waits``
        (None: it has an active job, and holds nothing).

        The slot is reserved while the claim is asked: while this process holds every
        slot of the host, fetches or claims, a claim could only come back HostBusy, and
        waits instead of asking. ``run --once`` starts a thousand fetches at once, and
        without the reservation most of their claims came back HostBusy, each a write in
        the database."""
        wait = FIRST_WAIT_SECONDS
        max_per_host = self.fetcher.config.max_per_host
        host = host_key(source.url)
        while True:
            # Only this process's own fetches can free a slot it holds all of: each
            # wakes one waiter as it ends (timers that looked before one did were 2,800
            # wake-ups in a pass of 2,000 feeds). HELD_WAIT_SECONDS is a safety net.
            while self._slot_waits.held(host) >= max_per_host:
                await self._slot_waits.wait(host, HELD_WAIT_SECONDS)
            self._slot_waits.taken(host)
            try:
                claim = await self._hand.claim(source.id)
            except HostBusy as busy:  # other processes hold the rest: nobody here to wake
                self._slot_waits.released(host)
                log.debug("fetch.waiting_for_host_slot", source_id=source.id, host=busy.host)
                if self.manual is not None:  # slots a process killed -9 left taken
                    await self.manual.take_back_expired()
                if busy.host != host:  # the source moved: wait for where it fetches from
                    while not await self._slot_waits.wait(busy.host, wait):
                        wait = next_wait(wait)
                        if self._slot_waits.held(busy.host) < max_per_host:
                            break
                elif not await self._slot_waits.wait(host, wait):
                    wait = next_wait(wait)
                continue
            except BaseException:
                self._slot_waits.freed(host)
                raise
            if claim is None:
                self._slot_waits.freed(host)
            return claim

    async def _orphaned(self, claim: Claim) -> None:
        """A claim by hand whose fetch was cancelled before it got it: recorded as the
        cancelled fetch it is, not left ONGOING."""
        await self._fail(
            claim, ErrorCode.INTERRUPTED, "fetch cancelled (shutdown)", interrupted=True
        )

    async def settle(self) -> None:
        """Until the claims by hand, a take-back of expired leases and the completions in
        the database are answered (before closing it)."""
        await self._hand.settle()
        if self.manual is not None:
            await self.manual.settle()
        await self.jobs.settle()

    async def _activity(self, source: Source, result: FetchResult | None) -> Activity | None:
        """The source's posting activity, for an adaptive interval: its posts dated within
        the rate window, those of ``result`` (not stored yet) included. None for a fixed
        interval (not needed) or when the database cannot say."""
        if source.interval_fixed:
            return None
        now = await self._now()
        try:
            dated = await dated_posts(
                self.db,
                source.id,
                to_iso(now - RATE_WINDOW),
                to_iso(now),
                result.posts if result else (),
            )
        except Exception as exc:  # the start interval until the next fetch: no harm done
            log.warning("schedule.rate_unknown", source_id=source.id, error_message=repr(exc))
            return None
        return activity_of(
            dated.count,
            parse_iso(dated.oldest) if dated.oldest else None,
            parse_iso(dated.newest) if dated.newest else None,
            now,
            parse_iso(source.created_at),
            hours=dated.hours,
        )

    async def _now(self) -> datetime:
        """The database's clock (``Database.now``): on a shared database a due time is for
        every daemon to act on, and this one's clock may be wrong. A database that does
        not answer gets the local clock: the write that follows fails anyway."""
        try:
            return await self.db.now()
        except Exception:
            return utcnow()

    async def _plan(
        self, claim: Claim, ending: Ending, activity: Activity | None = None
    ) -> Plan | None:
        """The source's next job after this ending (None: a one-off, not scheduled),
        planned from the database's clock."""
        if not claim.scheduled:
            return None  # a one-off (run --once, rssd fetch on a new source): no schedule
        source = claim.source
        return plan_next(
            source.url,
            Carried(claim.failures, claim.fetch_url, claim.moved_seen),
            ending,
            self.policy(source, activity),
            now=await self._now(),
            jitter=self.random.random(),
        )

    def _log_plan(self, source: Source, plan: Plan | None) -> None:
        """What the plan changed that an operator should hear of, after the fetch's event."""
        if plan is None:
            return
        if plan.due is not None:
            log.debug(
                "schedule.next",
                source_id=source.id,
                due_at=to_iso(plan.due),
                in_seconds=round((plan.due - utcnow()).total_seconds(), 1),
                failures=plan.carried.failures,
                reason=plan.reason.value if plan.reason else None,
            )
        if plan.moved_now:
            log.warning(
                "source.moved",
                source_id=source.id,
                url=source.url,
                final_url=plan.carried.fetch_url,
                detail="permanent redirect seen repeatedly; fetching the new URL directly. "
                "Update the url in config.toml.",
            )
        if plan.due is None:
            log.warning(
                "source.gone",
                source_id=source.id,
                url=source.url,
                detail="410 Gone: not fetched again until its config entry changes",
            )

    async def _fail(
        self, claim: Claim, code: ErrorCode, message: str, *, interrupted: bool = False
    ) -> None:
        """Record a failure (and the next job), retrying while the database is busy; never
        raises."""
        job_id = claim.job.id
        ending = Ending(completed=False, interrupted=interrupted)
        next_job = next_job_of(await self._plan(claim, ending))
        for attempt in range(3):
            try:
                await self.jobs.mark_failed(job_id, code, message, next_job=next_job)
                return
            except Exception as exc:
                if attempt == 2:
                    log.error(
                        "job.unrecorded",
                        job_id=job_id,
                        error_code=code.value,
                        error_message=repr(exc),
                    )
                    return
                await asyncio.sleep(1 + attempt)

    async def _attempt(self, claim: Claim, started: float) -> JobReport:
        source, job = claim.source, claim.job
        validators = await self._validators_for(source.id)
        known = self._feed_urls.get(source.id, source.feed_url)
        log.debug(
            "fetch.started",
            source_id=source.id,
            job_id=job.id,
            url=claim.fetch_url or source.url,
            conditional=bool(validators.etag or validators.last_modified),
            known_body_hash=validators.content_hash is not None,
        )
        result = await self.fetcher.fetch(
            source,
            validators,
            claim.fetch_url,
            seen=lambda: load_seen(self.db, source.id),
            feed_url=known,
            subscribers=claim.subscribers,
            gate=self._take_turn if self.fetcher.config.host_min_gap_seconds > 0 else None,
        )
        result = _redacted(result)
        final_url = result.meta.final_url
        ending = Ending(
            completed=result.outcome is not Outcome.FAILED,
            gone=result.error_code is ErrorCode.GONE,
            hints=Hints(
                http_status=result.meta.http_status,
                headers=dict(result.hints),
                ttl_minutes=result.ttl_minutes,
            ),
            moved_permanently=result.moved_permanently,
            # A new home whose URL carries credentials is not recorded (the schedule is
            # stored; credentials are not): such a feed keeps following the redirect.
            final_url=final_url if redact_optional(final_url) == final_url else None,
        )
        activity = await self._activity(source, result) if claim.scheduled else None
        plan = await self._plan(claim, ending, activity)
        next_job = next_job_of(plan)
        await self._pause_host(result, claim.fetch_url or feed_url_of(source, known))
        if result.outcome is Outcome.FAILED:
            assert result.error_code is not None
            await self.jobs.mark_failed(
                job.id,
                result.error_code,
                result.error_message or "",
                _stored_meta(result),
                next_job,
            )
            report = JobReport(
                source.id,
                source.url,
                job.id,
                FetchJobStatus.FAILED,
                result.error_code,
                result.error_message,
                result.meta.http_status,
                duration_ms=_ms(started),
                result=result.without_posts(),
            )
            self._log_ending(
                source, report, http_status=result.meta.http_status, bytes=result.meta.bytes
            )
            self._log_plan(source, plan)
            return report
        if result.warning:
            log.warning(
                "feed.malformed",
                source_id=source.id,
                job_id=job.id,
                url=source.url,
                detail=result.warning,
                posts=len(result.posts),
            )
        title = result.feed_title or None
        if title == self._titles.get(source.id, source.feed_title):
            title = None  # stored already
        twice = await self._configured_twice(
            source, result.feed_url if result.discovered else known
        )
        recorded = await self.jobs.mark_completed(
            job.id,
            _stored_meta(result),
            () if twice else result.posts,
            None if twice else result.seen_items,
            next_job,
            feed_title=title,
        )
        if recorded is None:
            status = await self.jobs.get_status(job.id)
            log.warning("fetch.discarded", source_id=source.id, job_id=job.id, status=status)
            return JobReport(source.id, source.url, job.id, status, duration_ms=_ms(started))
        job_done, counts = recorded
        if self._validators is not None:
            self._validators[source.id] = Validators.from_job(job_done)
        if title:
            self._titles[source.id] = title
        await self._note_feed(source, result, known)
        report = JobReport(
            source.id,
            source.url,
            job.id,
            FetchJobStatus.COMPLETED,
            http_status=result.meta.http_status,
            posts_new=counts.new,
            posts_updated=counts.updated,
            messages=counts.messages,
            duration_ms=_ms(started),
            result=result.without_posts(),
        )
        self._log_ending(
            source,
            report,
            http_status=result.meta.http_status,
            bytes=result.meta.bytes,
            posts_new=counts.new,
            posts_updated=counts.updated,
            webhooks_queued=counts.messages,
            items_skipped=result.items_skipped,
            parser=result.parser,
            outcome=result.outcome.value,
        )
        self._log_plan(source, plan)
        return report

    async def _take_turn(self, url: str) -> None:
        """The request gate: wait until ``url``'s host may take a request from us, by
        host_min_gap_seconds and its pause, across every daemon (rssd.repo.hosts)."""
        host, held = host_key(url), False
        while True:
            wait = await self.hosts.take_turn(host, self.fetcher.config.host_min_gap_seconds)
            if wait <= 0:
                return
            if wait > MAX_TURN_WAIT:
                raise HostPaused(host, wait)
            if not held:
                metrics.HOST_HELD.inc()
                held = True
            await asyncio.sleep(wait)

    async def _pause_host(self, result: FetchResult, target: str) -> None:
        """A 429 or 503 with Retry-After pauses the whole host, not only this feed: its
        other feeds would be refused too, and asking again is what the host objects to."""
        if result.meta.http_status not in (429, 503):
            return
        headers = {key.lower(): value for key, value in result.hints.items()}
        delay = retry_after(headers.get("retry-after"), utcnow())
        if delay is None or delay <= timedelta(0):
            return
        host = host_key(result.meta.final_url or target)
        try:
            await self.hosts.pause(host, delay.total_seconds())
        except Exception as exc:  # the feed's own schedule still honours the wait
            log.warning("host.pause_failed", host=host, error_message=repr(exc))
            return
        log.info("host.paused", host=host, seconds=round(delay.total_seconds()))

    async def _note_feed(self, source: Source, result: FetchResult, known: str | None) -> None:
        """Record a (re)discovered feed URL on the source. Not in the posts' transaction:
        a hint, rewritten by the next fetch if lost. (A new feed title is written with the
        posts: the webhooks announcing them name the feed by it.)"""
        if result.discovered and result.feed_url != known:
            await self.sources.set_feed_url(source.id, result.feed_url)
            self._feed_urls[source.id] = result.feed_url
            log.info(
                "source.discovered",
                source_id=source.id,
                url=redact(source.url),
                feed_url=redact_optional(result.feed_url),
                detail="the configured URL is a page; its feed is fetched directly from now on"
                if result.feed_url
                else "the configured URL answers a feed itself again",
            )

    async def _configured_twice(self, source: Source, feed_url: str | None) -> bool:
        """Whether ``source`` is a page whose feed (``feed_url``, as just found or known)
        is configured too: then its posts are stored under the feed's entry only
        (``source.duplicate``, once per process)."""
        if not feed_url:
            return False
        pair = (await self._feed_index()).pair(replace(source, feed_url=feed_url))
        if pair is None:
            return False
        if source.id not in self._told_twice:
            self._told_twice.add(source.id)
            log.warning(
                "source.duplicate",
                source_id=source.id,
                url=redact(source.url),
                feed_source_id=pair.feed.id,
                feed_url=redact(pair.feed.url),
                detail=pair.describe(),
            )
        return True

    async def _feed_index(self) -> FeedIndex:
        """The enabled sources by URL, read again only when the sources changed (here or
        by another daemon's sync): each page fetch used to read and normalize them all."""
        version = await self.sources.version()
        if self._index is None or self._index[0] != version:
            self._index = (version, FeedIndex.of(await self.sources.list(enabled_only=True)))
        return self._index[1]

    def name_of(self, source: Source) -> str | None:
        """The configured name, else the feed's title as last recorded."""
        return source.name or self._titles.get(source.id, source.feed_title)


def feed_url_of(source: Source, known: str | None) -> str:
    """Where a fetch of ``source`` went: the feed its page led to, else its URL."""
    return known or source.url


def _redacted(result: FetchResult) -> FetchResult:
    """No credentials in what is logged or printed about a fetch: an error message may
    quote the URL (rssd.models.redact)."""
    message = redact_optional(result.error_message)
    return result if message == result.error_message else replace(result, error_message=message)


def _stored_meta(result: FetchResult) -> FetchMeta:
    """The job's metadata as stored: the final URL without credentials. (The result keeps
    the real one: the daemon fetches a permanently moved feed there.)"""
    final = redact_optional(result.meta.final_url)
    if final == result.meta.final_url:
        return result.meta
    return replace(result.meta, final_url=final)


async def _metered(work: Awaitable[JobReport]) -> JobReport:
    """Count the attempt's ending and duration in the metrics registry."""
    started = time.monotonic()
    try:
        report = await work
    except asyncio.CancelledError:
        _observe("failed", ErrorCode.INTERRUPTED.value, started)
        raise
    _observe(_outcome(report), report.error_code.value if report.error_code else "", started)
    if report.posts_new:
        metrics.POSTS.labels("new").inc(report.posts_new)
    if report.posts_updated:
        metrics.POSTS.labels("updated").inc(report.posts_updated)
    return report


def _outcome(report: JobReport) -> str:
    """The ``outcome`` label: the fetcher's word for a completed fetch, else failed/skipped."""
    if report.skipped:
        return "skipped"
    if report.status is FetchJobStatus.COMPLETED:
        return report.result.outcome.value if report.result else Outcome.PARSED.value
    return "failed"


def _observe(outcome: str, error_code: str, started: float) -> None:
    metrics.FETCHES.labels(outcome, error_code).inc()
    metrics.FETCH_DURATION.observe(time.monotonic() - started)


def next_job_of(plan: Plan | None) -> NextJob | None:
    """The QUEUED job a plan asks for (None: no plan, or the source is gone)."""
    if plan is None or plan.due is None:
        return None
    carried = plan.carried
    return NextJob(
        to_iso(plan.due),
        carried.failures,
        carried.fetch_url,
        carried.moved_seen,
        plan.interval.total_seconds() if plan.interval is not None else None,
        plan.reason.value if plan.reason is not None else None,
    )


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
