"""FetchJobRepo: the FetchJob state machine, the one-active-job guard, atomic completion.

Jobs are queued and claimed the way the daemon does it (tests/support/jobs.py)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg
import pytest

from rssd.clock import now_iso
from rssd.models.dto import ErrorCode, FetchJob, FetchJobStatus, FetchMeta, PostCreate
from rssd.repo.db import Database
from rssd.repo.jobs import MAX_ERROR_MESSAGE, FetchJobRepo, latest_jobs
from rssd.repo.open import open_database
from rssd.repo.posts import PostRepo, UpsertCounts
from rssd.repo.sources import SourceRepo
from tests.support.config import make_config
from tests.support.jobs import claim_job, get, latest_for_source, queue_job, recover

pytestmark = pytest.mark.both_backends

INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)

META = FetchMeta(
    http_status=200,
    etag='"abc"',
    last_modified="Sun, 29 Nov 2026 10:00:00 GMT",
    content_hash="e:1234",
    bytes=4321,
    final_url="http://a.example/feed.xml",
)


def post(external_id: str, title: str = "t", content_hash: str | None = None) -> PostCreate:
    return PostCreate(
        external_id=external_id, title=title, content_hash=content_hash or f"h-{title}"
    )


async def make_sources(db: Database, tmp_path: Path, count: int = 1) -> list[int]:
    urls = [f"http://s{i}.example/feed" for i in range(count)]
    await SourceRepo(db).sync(make_config(tmp_path, urls))
    return [source.id for source in await SourceRepo(db).list()]


@pytest.fixture
async def source(db: Database, tmp_path: Path) -> int:
    (source_id,) = await make_sources(db, tmp_path)
    return source_id


async def job_in(db: Database, source_id: int, status: FetchJobStatus) -> FetchJob:
    """A job of ``source_id`` brought to ``status`` through the allowed transitions."""
    jobs = FetchJobRepo(db)
    job = await queue_job(db, source_id)
    assert job is not None
    if status is FetchJobStatus.QUEUED:
        return job
    if status is FetchJobStatus.FAILED:
        failed = await jobs.mark_failed(job.id, ErrorCode.TIMEOUT, "slow")
        assert failed is not None
        return failed
    ongoing = await claim_job(db, job.id)
    assert ongoing is not None
    if status is FetchJobStatus.ONGOING:
        return ongoing
    done = await jobs.mark_completed(job.id, META)
    assert done is not None
    return done[0]


Transition = Callable[[Database, int], Awaitable[object]]


async def to_ongoing(db: Database, job_id: int) -> object:
    return await claim_job(db, job_id)


async def to_completed(db: Database, job_id: int) -> object:
    return await FetchJobRepo(db).mark_completed(job_id, META, [post("p1"), post("p2")])


async def to_completed_no_posts(db: Database, job_id: int) -> object:
    return await FetchJobRepo(db).mark_completed(job_id, META)


async def to_failed(db: Database, job_id: int) -> object:
    return await FetchJobRepo(db).mark_failed(job_id, ErrorCode.HTTP_ERROR, "HTTP 500", META)


TRANSITIONS: dict[str, Transition] = {
    "ongoing": to_ongoing,
    "completed": to_completed,
    "completed-without-posts": to_completed_no_posts,
    "failed": to_failed,
}

QUEUED, ONGOING, COMPLETED, FAILED = (
    FetchJobStatus.QUEUED,
    FetchJobStatus.ONGOING,
    FetchJobStatus.COMPLETED,
    FetchJobStatus.FAILED,
)

ALLOWED = [
    (QUEUED, "ongoing", ONGOING),
    (QUEUED, "failed", FAILED),
    (ONGOING, "completed", COMPLETED),
    (ONGOING, "completed-without-posts", COMPLETED),
    (ONGOING, "failed", FAILED),
]
REFUSED = [
    (QUEUED, "completed"),
    (QUEUED, "completed-without-posts"),
    (ONGOING, "ongoing"),
    (COMPLETED, "ongoing"),
    (COMPLETED, "completed"),
    (COMPLETED, "completed-without-posts"),
    (COMPLETED, "failed"),
    (FAILED, "ongoing"),
    (FAILED, "completed"),
    (FAILED, "completed-without-posts"),
    (FAILED, "failed"),
]


def test_the_tables_cover_every_state_and_transition() -> None:
    pairs = {(state, name) for state, name, _ in ALLOWED} | set(REFUSED)
    assert pairs == {(state, name) for state in FetchJobStatus for name in TRANSITIONS}


@pytest.mark.parametrize(("start", "transition", "end"), ALLOWED)
async def test_allowed_transitions(
    db: Database, source: int, start: FetchJobStatus, transition: str, end: FetchJobStatus
) -> None:
    jobs = FetchJobRepo(db)
    job = await job_in(db, source, start)
    result = await TRANSITIONS[transition](db, job.id)
    assert result is not None
    stored = await get(db, job.id)
    assert stored is not None
    assert stored.status is end
    assert await jobs.get_status(job.id) is end
    returned = result[0] if isinstance(result, tuple) else result
    assert isinstance(returned, FetchJob)
    assert returned.status is end
    if end is ONGOING:
        assert stored.started_at is not None
        assert stored.ended_at is None
    else:
        assert stored.ended_at is not None
    if end is FAILED:
        assert (stored.error_code, stored.error_message) == (ErrorCode.HTTP_ERROR, "HTTP 500")
    if end is COMPLETED:
        assert stored.error_code is None
        assert stored.posts_count == (2 if transition == "completed" else 0)
        assert returned.posts_count == stored.posts_count
    if end in (COMPLETED, FAILED):
        # Whatever the outcome, what the HTTP exchange said is on the job.
        recorded = FetchMeta(**{f: getattr(stored, f) for f in FetchMeta.__struct_fields__})
        assert recorded == META


@pytest.mark.parametrize(("start", "transition"), REFUSED)
async def test_refused_transitions_return_none_and_change_nothing(
    db: Database, source: int, start: FetchJobStatus, transition: str
) -> None:
    job = await job_in(db, source, start)
    posts_before = await PostRepo(db).count()
    before = await get(db, job.id)
    assert await TRANSITIONS[transition](db, job.id) is None
    assert await get(db, job.id) == before
    assert await PostRepo(db).count() == posts_before


@pytest.mark.parametrize("transition", sorted(TRANSITIONS))
async def test_transitions_of_a_missing_job_return_none(
    db: Database, source: int, transition: str
) -> None:
    jobs = FetchJobRepo(db)
    assert await TRANSITIONS[transition](db, 12345) is None
    assert await get(db, 12345) is None
    assert await jobs.get_status(12345) is None
    assert await PostRepo(db).count() == 0


async def test_a_job_runs_the_whole_state_machine(db: Database, source: int) -> None:
    jobs = FetchJobRepo(db)
    queued = await queue_job(db, source)
    assert queued is not None
    assert (queued.status, queued.content_source_id, queued.posts_count) == (QUEUED, source, 0)
    assert queued.started_at is None
    assert queued.ended_at is None
    ongoing = await claim_job(db, queued.id)
    assert ongoing is not None
    assert ongoing.status is ONGOING
    result = await jobs.mark_completed(queued.id, META, [post("a"), post("b"), post("c")])
    assert result is not None
    done, counts = result
    assert counts == UpsertCounts(new=3, updated=0)
    assert (done.status, done.posts_count) == (COMPLETED, 3)
    assert done.queued_at <= (done.started_at or "") <= (done.ended_at or "")
    assert await get(db, queued.id) == done


async def test_a_failure_message_is_capped(db: Database, source: int) -> None:
    jobs = FetchJobRepo(db)
    job = await queue_job(db, source)
    assert job is not None
    failed = await jobs.mark_failed(job.id, ErrorCode.NOT_A_FEED, "x" * (MAX_ERROR_MESSAGE * 3))
    assert failed is not None
    assert failed.error_message == "x" * MAX_ERROR_MESSAGE


# --- the one-active-job guard ----------------------------------------------------------


@pytest.mark.parametrize("active", [QUEUED, ONGOING])
@pytest.mark.parametrize("ended", [COMPLETED, FAILED])
async def test_queue_job_refuses_while_a_job_is_active_and_works_after_it_ends(
    db: Database, source: int, active: FetchJobStatus, ended: FetchJobStatus
) -> None:
    jobs = FetchJobRepo(db)
    first = await job_in(db, source, active)
    assert await queue_job(db, source) is None
    assert await queue_job(db, source) is None
    if active is QUEUED:
        assert await claim_job(db, first.id) is not None
    if ended is COMPLETED:
        assert await jobs.mark_completed(first.id, META) is not None
    else:
        assert await jobs.mark_failed(first.id, ErrorCode.TIMEOUT, "slow") is not None
    second = await queue_job(db, source)
    assert second is not None
    assert second.id > first.id
    assert second.status is QUEUED
    rows = await db.fetchall("SELECT count(*) FROM fetch_job")
    assert rows[0][0] == 2, "a refused queue_job writes no row"


async def test_queue_job_for_one_source_does_not_block_another(
    db: Database, tmp_path: Path
) -> None:
    one, two = await make_sources(db, tmp_path, 2)
    assert await queue_job(db, one) is not None
    assert await queue_job(db, two) is not None


async def test_queue_job_for_an_unknown_source_raises(db: Database, source: int) -> None:
    with pytest.raises(INTEGRITY_ERRORS, match=r"(?i)foreign key"):
        await queue_job(db, source + 100)


async def test_concurrent_queue_jobs_on_one_connection_yield_exactly_one_job(
    db: Database, tmp_path: Path
) -> None:
    sources = await make_sources(db, tmp_path, 3)
    jobs = FetchJobRepo(db)
    for _ in range(3):  # rounds: the guard holds again after each job ends
        results = await asyncio.gather(*(queue_job(db, s) for s in sources for _ in range(25)))
        won = [job for job in results if job is not None]
        assert sorted(job.content_source_id for job in won) == sorted(sources)
        for job in won:
            assert await jobs.mark_failed(job.id, ErrorCode.TIMEOUT, "next round") is not None
    rows = await db.fetchall("SELECT count(*) FROM fetch_job")
    assert rows[0][0] == 3 * len(sources)


async def test_concurrent_queue_jobs_from_two_connections_yield_exactly_one_job(
    db: Database, db_target: Path | str, tmp_path: Path
) -> None:
    """Two processes' worth: each Database has its own SQLite connection and thread."""
    sources = await make_sources(db, tmp_path, 2)
    other = await open_database(db_target)
    try:
        repos = [FetchJobRepo(db), FetchJobRepo(other)]
        for _ in range(5):
            results = await asyncio.gather(
                *(queue_job(conn, s) for _ in range(10) for conn in (db, other) for s in sources)
            )
            won = [job for job in results if job is not None]
            assert sorted(job.content_source_id for job in won) == sorted(sources)
            active = await db.fetchall(
                "SELECT content_source_id FROM fetch_job WHERE status IN ('QUEUED', 'ONGOING')"
            )
            assert sorted(row[0] for row in active) == sorted(sources)
            # Either connection may finish the job the other one queued.
            for job in won:
                assert await claim_job(other, job.id) is not None
                assert await repos[0].mark_completed(job.id, META) is not None
    finally:
        await other.close()


# --- mark_completed: posts and job in one transaction ----------------------------------


async def test_mark_completed_writes_the_posts_with_the_job(db: Database, source: int) -> None:
    jobs = FetchJobRepo(db)
    job = await job_in(db, source, ONGOING)
    result = await jobs.mark_completed(job.id, META, [post("a"), post("b"), post("a", "dup")])
    assert result is not None
    done, counts = result
    assert counts == UpsertCounts(new=2, updated=0)
    assert done.posts_count == 2
    rows = await db.fetchall("SELECT external_id, fetch_job_id, title FROM posts ORDER BY id")
    assert [tuple(row) for row in rows] == [("a", job.id, "t"), ("b", job.id, "t")]


@pytest.mark.parametrize("start", [QUEUED, COMPLETED, FAILED])
async def test_mark_completed_of_a_job_that_is_not_ongoing_writes_no_post(
    db: Database, source: int, start: FetchJobStatus
) -> None:
    jobs = FetchJobRepo(db)
    job = await job_in(db, source, start)
    assert await jobs.mark_completed(job.id, META, [post("a"), post("b")]) is None
    assert await PostRepo(db).count() == 0


async def test_mark_completed_after_recovery_failed_the_job_writes_no_post(
    db: Database, source: int
) -> None:
    """A restart marked the job interrupted while the fetch was still running."""
    jobs = FetchJobRepo(db)
    job = await job_in(db, source, ONGOING)
    assert await recover(db) == [job.id]
    assert await jobs.mark_completed(job.id, META, [post("a")]) is None
    assert await PostRepo(db).count() == 0
    stored = await get(db, job.id)
    assert stored is not None
    assert (stored.status, stored.error_code) == (FAILED, ErrorCode.INTERRUPTED)


async def test_a_post_that_cannot_be_stored_rolls_back_the_whole_completion(
    db: Database, source: int
) -> None:
    jobs = FetchJobRepo(db)
    job = await job_in(db, source, ONGOING)
    # A lone surrogate cannot be encoded to UTF-8: SQLite's binding fails mid-batch.
    bad = [post("a"), post("b"), PostCreate(external_id="c", title="\ud800", content_hash="h")]
    with pytest.raises(UnicodeEncodeError):
        await jobs.mark_completed(job.id, META, bad)
    assert await get(db, job.id) == job, "still ONGOING, nothing recorded"
    assert await PostRepo(db).count() == 0
    # The connection is clean and the job can still complete.
    result = await jobs.mark_completed(job.id, META, [post("a")])
    assert result is not None
    assert result[1] == UpsertCounts(new=1, updated=0)


async def test_mark_completed_counts_new_and_updated_posts(db: Database, source: int) -> None:
    jobs = FetchJobRepo(db)
    first = await job_in(db, source, ONGOING)
    assert await jobs.mark_completed(first.id, META, [post("a"), post("b")]) is not None
    second = await job_in(db, source, ONGOING)
    result = await jobs.mark_completed(second.id, META, [post("a"), post("b", "edited"), post("c")])
    assert result is not None
    done, counts = result
    assert counts == UpsertCounts(new=1, updated=1)
    assert done.posts_count == 1, "posts_count counts new posts"
    stored = await get(db, second.id)
    assert stored is not None
    assert stored.posts_count == 1


# --- start-up recovery, latest jobs ----------------------------------------------------


async def test_get_latest_completed(db: Database, tmp_path: Path) -> None:
    one, two = await make_sources(db, tmp_path, 2)
    jobs = FetchJobRepo(db)
    assert await latest_for_source(db, one) is None
    assert await jobs.get_latest_completed(one) is None

    completed = await job_in(db, one, COMPLETED)
    other = await job_in(db, two, COMPLETED)
    failed = await job_in(db, one, FAILED)
    queued = await job_in(db, one, QUEUED)

    latest = await latest_for_source(db, one)
    assert latest is not None
    assert latest.id == queued.id
    latest_ok = await jobs.get_latest_completed(one)
    assert latest_ok is not None
    assert latest_ok.id == completed.id
    assert latest_ok.etag == META.etag
    assert failed.id < queued.id
    latest_two = await latest_for_source(db, two)
    assert latest_two is not None
    assert latest_two.id == other.id
    assert await jobs.latest_validators() == {
        one: (latest_ok.etag, latest_ok.last_modified, latest_ok.content_hash),
        two: (other.etag, other.last_modified, other.content_hash),
    }


async def test_latest_jobs_counts_failures_since_the_last_success(
    db: Database, tmp_path: Path
) -> None:
    one, two, three = await make_sources(db, tmp_path, 3)
    await job_in(db, one, FAILED)
    await job_in(db, one, COMPLETED)
    for _ in range(3):
        await job_in(db, one, FAILED)
    interrupted = await job_in(db, two, ONGOING)
    await recover(db)
    by_source = {row.source_id: row for row in await latest_jobs(db)}
    assert by_source[one].failures == 3
    assert by_source[one].status is FAILED
    assert by_source[one].last_success_at is not None
    assert by_source[two].failures == 0, "interrupted does not count as a failure"
    assert by_source[two].job_id == interrupted.id
    assert by_source[two].error_code is ErrorCode.INTERRUPTED
    assert by_source[three].job_id is None
    assert by_source[three].status is None
    (only,) = await latest_jobs(db, one)
    assert only == by_source[one]


async def test_prune_keeps_each_sources_latest_and_latest_completed_job(
    db: Database, source: int
) -> None:
    jobs = FetchJobRepo(db)
    old_ok = await job_in(db, source, COMPLETED)
    newer_ok = await job_in(db, source, COMPLETED)
    newest = await job_in(db, source, FAILED)
    pruned = await jobs.prune(older_than="9999-01-01T00:00:00.000Z", batch=1)
    assert pruned == 1
    assert await get(db, old_ok.id) is None
    assert await get(db, newer_ok.id) is not None
    assert await get(db, newest.id) is not None
    assert await jobs.prune(older_than=now_iso()) == 0
