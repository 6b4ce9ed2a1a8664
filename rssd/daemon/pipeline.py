"""One fetch attempt end to end: queue the job, fetch, record the outcome, log one event.

Shared by ``rssd run`` and ``rssd fetch`` so both go through the same guards: the
one-active-job index refuses a duplicate, and the posts and the COMPLETED mark are written
in one transaction.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from datetime import timedelta

from rssd import metrics
from rssd.clock import to_iso, utcnow
from rssd.fetch.fetcher import Fetcher, FetchResult, Outcome, Validators
from rssd.logs import get_logger
from rssd.models.dto import ErrorCode, FetchJob, FetchJobStatus, FetchMeta, Source
from rssd.models.redact import redact, redact_optional
from rssd.repo.db import Database
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.seen import load_seen
from rssd.repo.sources import SourceRepo

log = get_logger("rssd.fetch")

#: An active job older than this cannot be running any more (a fetch is bounded by its
#: timeouts, a queue wait by the launch limit): it is failed so the source can move on.
STALE_JOB_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class JobReport:
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
    def __init__(self, db: Database, fetcher: Fetcher) -> None:
        self.db = db
        self.jobs = FetchJobRepo(db)
        self.fetcher = fetcher
        #: The last successful fetch's validators per source, kept in step as jobs
        #: complete, so a fetch needs no query for them (one statement fewer per fetch).
        self._validators: dict[int, Validators] | None = None
        self.sources = SourceRepo(db)
        #: What this pipeline recorded on content_sources since the Source rows it is
        #: handed were read (the daemon keeps those until a reload): discovered feed URL
        #: and the feed's title, by source id.
        self._feed_urls: dict[int, str | None] = {}
        self._titles: dict[int, str | None] = {}

    async def preload(self) -> None:
        """Read every source's validators in one query; until then each fetch asks."""
        latest = await self.jobs.latest_completed_all()
        self._validators = {sid: Validators.from_job(job) for sid, job in latest.items()}

    async def _validators_for(self, source_id: int) -> Validators:
        if self._validators is None:
            return Validators.from_job(await self.jobs.get_latest_completed(source_id))
        return self._validators.get(source_id, Validators())

    async def run(self, source: Source, fetch_url: str | None = None) -> JobReport:
        """Fetch ``source`` once (from ``fetch_url`` if it moved). Never raises, except
        CancelledError (after recording it). Every ending is counted in the metrics."""
        started = time.monotonic()
        try:
            report = await self._run(source, fetch_url, started)
        except asyncio.CancelledError:
            _observe("failed", ErrorCode.INTERRUPTED.value, started)
            raise
        _observe(_outcome(report), report.error_code.value if report.error_code else "", started)
        if report.posts_new:
            metrics.POSTS.labels("new").inc(report.posts_new)
        if report.posts_updated:
            metrics.POSTS.labels("updated").inc(report.posts_updated)
        return report

    async def _run(self, source: Source, fetch_url: str | None, started: float) -> JobReport:
        try:
            job = await self._queue(source)
        except Exception as exc:  # the database refused the write (locked too long, full)
            message = f"cannot queue a fetch job: {type(exc).__name__}: {exc}"
            log.error(
                "fetch.failed",
                source_id=source.id,
                url=source.url,
                error_code=ErrorCode.INTERNAL.value,
                error_message=message,
            )
            return JobReport(
                source.id, source.url, None, FetchJobStatus.FAILED, ErrorCode.INTERNAL, message
            )
        if job is None:
            log.info("fetch.skipped", source_id=source.id, url=source.url, reason="job_active")
            return JobReport(source.id, source.url, None, None)
        try:
            return await self._attempt(source, job, started, fetch_url)
        except asyncio.CancelledError:
            await self._fail(job.id, ErrorCode.INTERRUPTED, "fetch cancelled (shutdown)")
            log.warning(
                "fetch.failed",
                source_id=source.id,
                job_id=job.id,
                url=source.url,
                error_code=ErrorCode.INTERRUPTED.value,
                duration_ms=_ms(started),
            )
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            await self._fail(job.id, ErrorCode.INTERNAL, message)
            log.exception(
                "fetch.failed",
                source_id=source.id,
                job_id=job.id,
                url=source.url,
                error_code=ErrorCode.INTERNAL.value,
                error_message=message,
                duration_ms=_ms(started),
            )
            return JobReport(
                source.id,
                source.url,
                job.id,
                FetchJobStatus.FAILED,
                ErrorCode.INTERNAL,
                message,
                duration_ms=_ms(started),
            )

    async def _queue(self, source: Source) -> FetchJob | None:
        """Queue a job; an active job older than STALE_JOB_AFTER is failed first.

        Such a job is left over from a write that failed twice (a database locked or full
        at the worst moment): without this the source would stay blocked until a restart.
        """
        job = await self.jobs.queue_job(source.id)
        if job is None:
            cutoff = to_iso(utcnow() - STALE_JOB_AFTER)
            if await self.jobs.fail_stale(source.id, cutoff):
                log.warning("jobs.stale_failed", source_id=source.id, url=source.url)
                job = await self.jobs.queue_job(source.id)
        return job

    async def _fail(self, job_id: int, code: ErrorCode, message: str) -> None:
        """Record a failure, retrying while the database is busy; never raises."""
        for attempt in range(3):
            try:
                await self.jobs.mark_failed(job_id, code, message)
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

    async def _attempt(
        self, source: Source, job: FetchJob, started: float, fetch_url: str | None
    ) -> JobReport:
        ongoing = await self.jobs.mark_ongoing(job.id)
        if ongoing is None:
            # Another process ended this job between our two statements (start-up recovery).
            return JobReport(source.id, source.url, job.id, await self.jobs.get_status(job.id))
        validators = await self._validators_for(source.id)
        known = self._feed_urls.get(source.id, source.feed_url)
        log.debug(
            "fetch.started",
            source_id=source.id,
            job_id=job.id,
            url=fetch_url or source.url,
            conditional=bool(validators.etag or validators.last_modified),
            known_body_hash=validators.content_hash is not None,
        )
        result = await self.fetcher.fetch(
            source,
            validators,
            fetch_url,
            seen=lambda: load_seen(self.db, source.id),
            feed_url=known,
        )
        result = _redacted(result)
        if result.outcome is Outcome.FAILED:
            assert result.error_code is not None
            await self.jobs.mark_failed(
                job.id, result.error_code, result.error_message or "", _stored_meta(result)
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
            log.warning(
                "fetch.failed",
                source_id=source.id,
                source_name=self.name_of(source),
                job_id=job.id,
                url=source.url,
                http_status=result.meta.http_status,
                duration_ms=report.duration_ms,
                bytes=result.meta.bytes,
                error_code=result.error_code.value,
                error_message=result.error_message,
            )
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
        recorded = await self.jobs.mark_completed(
            job.id, _stored_meta(result), result.posts, result.seen_items
        )
        if recorded is None:
            status = await self.jobs.get_status(job.id)
            log.warning("fetch.discarded", source_id=source.id, job_id=job.id, status=status)
            return JobReport(source.id, source.url, job.id, status, duration_ms=_ms(started))
        job_done, counts = recorded
        if self._validators is not None:
            self._validators[source.id] = Validators.from_job(job_done)
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
        log.info(
            "fetch.completed",
            source_id=source.id,
            source_name=self.name_of(source),
            job_id=job.id,
            url=source.url,
            http_status=result.meta.http_status,
            duration_ms=report.duration_ms,
            bytes=result.meta.bytes,
            posts_new=counts.new,
            posts_updated=counts.updated,
            webhooks_queued=counts.messages,
            items_skipped=result.items_skipped,
            outcome=result.outcome.value,
            error_code=None,
        )
        return report

    async def _note_feed(self, source: Source, result: FetchResult, known: str | None) -> None:
        """Record a (re)discovered feed URL and a new feed title on the source. Not in
        the posts' transaction: both are hints, rewritten by the next fetch if lost."""
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
        title = result.feed_title
        if title and title != self._titles.get(source.id, source.feed_title):
            await self.sources.set_feed_title(source.id, title)
            self._titles[source.id] = title

    def name_of(self, source: Source) -> str | None:
        """The configured name, else the feed's title as last recorded."""
        return source.name or self._titles.get(source.id, source.feed_title)


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
    return result.meta.model_copy(update={"final_url": final})


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


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
