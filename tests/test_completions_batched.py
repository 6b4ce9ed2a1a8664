"""Completions in batches (``FetchJobRepo.mark_completed``, rssd/batching.py): those that
store no post (304s, unchanged bodies) as two statements for all the completions made
meanwhile, those that store posts as one more write in the same commit (each alone if
that one is refused), with the same outcome per job as one completion each."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rssd.models.dto import FetchJob, FetchJobStatus, FetchMeta, PostCreate
from rssd.models.search import parse
from rssd.repo.db import Database
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.posts import PostRepo, UpsertCounts
from rssd.repo.queries import PostFilter
from rssd.repo.search import search_posts
from rssd.repo.sources import SourceRepo
from rssd.repo.sqlite import SqliteDatabase
from rssd.repo.transitions import NextJob
from tests.support.config import make_config
from tests.support.jobs import get, latest_for_source, ongoing_job

pytestmark = pytest.mark.both_backends

LATER = "2030-01-01T00:00:00Z"


async def _ongoing(db: Database, tmp_path: Path, count: int) -> list[FetchJob]:
    await SourceRepo(db).sync(
        make_config(tmp_path, [f"http://s{i}.example/" for i in range(count)])
    )
    return [await ongoing_job(db, source.id) for source in await SourceRepo(db).list()]


def _commits(db: Database) -> int:
    """Write transactions the backend's writer committed so far (both writers count)."""
    commits = getattr(db, "commits", None)
    assert isinstance(commits, int), type(db)
    return commits


def _meta(n: int) -> FetchMeta:
    return FetchMeta(http_status=304, etag=f'"e{n}"', last_modified=f"day {n}", bytes=n)


async def test_completions_made_together_each_get_their_own_outcome(
    db: Database, tmp_path: Path
) -> None:
    jobs = await _ongoing(db, tmp_path, 30)
    repo = FetchJobRepo(db)
    before = _commits(db)
    nexts = [
        NextJob(LATER, failures=0, fetch_url=f"http://moved{n}.example/", moved_seen=n,
                interval_seconds=60.0 * n, interval_reason="posting_rate")
        for n in range(30)
    ]  # fmt: skip
    results = await asyncio.gather(
        *(repo.mark_completed(job.id, _meta(n), next_job=nexts[n]) for n, job in enumerate(jobs))
    )
    assert _commits(db) - before == 1, "30 completions at once: one transaction"
    for n, (job, result) in enumerate(zip(jobs, results, strict=True)):
        assert result is not None
        done, counts = result
        assert done.id == job.id and done.status is FetchJobStatus.COMPLETED
        assert (done.http_status, done.etag, done.last_modified, done.bytes) == (
            304, f'"e{n}"', f"day {n}", n,
        )  # fmt: skip
        assert counts.new == 0 and done.posts_count == 0
        queued = await db.fetchone(
            "SELECT status, not_before, fetch_url, moved_seen, failures, interval_seconds, "
            "interval_reason FROM fetch_job WHERE content_source_id = :s AND id > :id",
            {"s": job.content_source_id, "id": job.id},
        )
        assert queued is not None
        assert str(queued["not_before"]).startswith("2030-01-01")
        assert (queued["status"], queued["fetch_url"], queued["moved_seen"]) == (
            "QUEUED", f"http://moved{n}.example/", n,
        )  # fmt: skip
        assert (queued["failures"], queued["interval_seconds"], queued["interval_reason"]) == (
            0, 60.0 * n, "posting_rate",
        )  # fmt: skip


async def test_a_job_no_longer_ongoing_gets_none_and_no_next_job(
    db: Database, tmp_path: Path
) -> None:
    first, second = await _ongoing(db, tmp_path, 2)
    repo = FetchJobRepo(db)
    assert await repo.mark_completed(first.id, _meta(1)) is not None
    later = NextJob(LATER)
    again, other, twice = await asyncio.gather(
        repo.mark_completed(first.id, _meta(2), next_job=later),  # ended already
        repo.mark_completed(second.id, _meta(3), next_job=later),
        repo.mark_completed(second.id, _meta(4), next_job=later),  # twice in one batch
    )
    assert again is None and twice is None and other is not None
    ended = await get(db, first.id)
    assert ended is not None and ended.etag == '"e1"', "the first completion stands"
    assert await latest_for_source(db, first.content_source_id) == ended, "nothing queued"
    done = await get(db, second.id)
    assert done is not None and done.etag == '"e3"'


async def test_a_completion_the_database_refuses_fails_alone(db: Database, tmp_path: Path) -> None:
    jobs = await _ongoing(db, tmp_path, 3)
    repo = FetchJobRepo(db)
    refused = NextJob(LATER, failures=None)  # type: ignore[arg-type]  # NOT NULL
    results = await asyncio.gather(
        *(
            repo.mark_completed(job.id, _meta(n), next_job=refused if n == 1 else NextJob(LATER))
            for n, job in enumerate(jobs)
        ),
        return_exceptions=True,
    )
    assert isinstance(results[1], Exception)
    assert not isinstance(results[0], BaseException) and results[0] is not None
    assert not isinstance(results[2], BaseException) and results[2] is not None
    statuses = [(await get(db, job.id)) for job in jobs]
    assert [job.status if job else None for job in statuses] == [
        FetchJobStatus.COMPLETED, FetchJobStatus.ONGOING, FetchJobStatus.COMPLETED,
    ], "the refused one rolled back alone, still ONGOING"  # fmt: skip


def _posts(source: int, *names: str) -> list[PostCreate]:
    return [
        PostCreate(external_id=f"{source}-{name}", title=name, content_hash=name) for name in names
    ]


async def test_stores_and_plain_completions_made_together_share_one_commit(
    db: Database, tmp_path: Path
) -> None:
    jobs = await _ongoing(db, tmp_path, 6)
    repo = FetchJobRepo(db)
    before = _commits(db)

    async def complete(n: int, job: FetchJob) -> tuple[FetchJob, UpsertCounts] | None:
        if not n % 2:
            return await repo.mark_completed(job.id, _meta(n), next_job=NextJob(LATER))
        await asyncio.sleep(0.002)  # fetches end one by one: a store joins the 304s' wait
        return await repo.mark_completed(
            job.id, _meta(n), _posts(n, "a", "b"), seen_items=b"x" * 16
        )

    results = await asyncio.gather(*(complete(n, job) for n, job in enumerate(jobs)))
    assert _commits(db) - before == 1, (
        "three 304s, then three stores within their wait: one transaction"
    )
    for n, (job, result) in enumerate(zip(jobs, results, strict=True)):
        assert result is not None
        done, counts = result
        assert done.id == job.id and done.status is FetchJobStatus.COMPLETED
        assert done.etag == f'"e{n}"'
        assert counts.new == (2 if n % 2 else 0) and done.posts_count == counts.new
    assert await PostRepo(db).count() == 6


async def test_a_store_the_database_refuses_fails_alone_in_its_batch(
    db: Database, tmp_path: Path
) -> None:
    jobs = await _ongoing(db, tmp_path, 4)
    repo = FetchJobRepo(db)
    # A lone surrogate cannot be encoded to UTF-8: binding it fails mid-store.
    bad = [PostCreate(external_id="bad", title="\ud800", content_hash="h")]
    results = await asyncio.gather(
        repo.mark_completed(jobs[0].id, _meta(0), _posts(0, "a")),
        repo.mark_completed(jobs[1].id, _meta(1), bad),
        repo.mark_completed(jobs[2].id, _meta(2)),
        repo.mark_completed(jobs[3].id, _meta(3), _posts(3, "a")),
        return_exceptions=True,
    )
    assert isinstance(results[1], UnicodeEncodeError)
    for n in (0, 2, 3):
        result = results[n]
        assert not isinstance(result, BaseException) and result is not None
        assert result[1] == UpsertCounts(new=0 if n == 2 else 1, updated=0)
    statuses = [(await get(db, job.id)) for job in jobs]
    assert [job.status if job else None for job in statuses] == [
        FetchJobStatus.COMPLETED, FetchJobStatus.ONGOING,
        FetchJobStatus.COMPLETED, FetchJobStatus.COMPLETED,
    ], "the refused store rolled back alone, its job still ONGOING"  # fmt: skip
    assert await PostRepo(db).count() == 2


async def test_the_stores_of_a_batch_go_as_one_write_and_a_refused_one_still_fails_alone(
    db: Database, tmp_path: Path
) -> None:
    """Stores that join the 304s' wait go as one write (on SQLite, FTS5 writes a segment at
    every savepoint: one for all, not one a store); one the database refuses sends each
    back alone, so it fails by itself and the others are stored, and indexed, once."""
    jobs = await _ongoing(db, tmp_path, 5)
    repo = FetchJobRepo(db)
    before = _commits(db)
    bad = [PostCreate(external_id="bad", title="\ud800", content_hash="h")]

    async def complete(n: int, job: FetchJob) -> tuple[FetchJob, UpsertCounts] | None:
        if n in (0, 4):
            return await repo.mark_completed(job.id, _meta(n), next_job=NextJob(LATER))
        await asyncio.sleep(0.002)  # within the 304s' wait
        posts = bad if n == 2 else [
            PostCreate(external_id=f"{n}-p", title=f"gardening {n}", content_hash=f"{n}")
        ]  # fmt: skip
        return await repo.mark_completed(job.id, _meta(n), posts)

    results = await asyncio.gather(
        *(complete(n, job) for n, job in enumerate(jobs)), return_exceptions=True
    )
    assert isinstance(results[2], UnicodeEncodeError)
    for n in (0, 1, 3, 4):
        result = results[n]
        assert not isinstance(result, BaseException) and result is not None
        assert result[1].new == (1 if n in (1, 3) else 0)
    statuses = [(await get(db, job.id)) for job in jobs]
    assert [job.status if job else None for job in statuses] == [
        FetchJobStatus.COMPLETED, FetchJobStatus.COMPLETED, FetchJobStatus.ONGOING,
        FetchJobStatus.COMPLETED, FetchJobStatus.COMPLETED,
    ], "the refused store rolled back alone, its job still ONGOING"  # fmt: skip
    # The batch's commit (the stores' write refused whole), then the stores again, each
    # in a savepoint of one more commit.
    assert _commits(db) - before == 2
    found = await search_posts(db, parse("gardening"), PostFilter())
    assert sorted(str(hit.post.title) for hit in found.hits) == ["gardening 1", "gardening 3"]


async def test_stores_in_one_write_index_each_post_once(db: Database, tmp_path: Path) -> None:
    jobs = await _ongoing(db, tmp_path, 4)
    repo = FetchJobRepo(db)

    async def complete(n: int, job: FetchJob) -> tuple[FetchJob, UpsertCounts] | None:
        if n == 0:
            return await repo.mark_completed(job.id, _meta(n))
        # No pause before these: all four are asked for in one turn of the loop, so one
        # batch holds them whatever the machine's load.
        posts = [
            PostCreate(external_id=f"{n}-{k}", title=f"tomato {n} {k}", content_hash=f"{n}{k}")
            for k in range(3)
        ]
        return await repo.mark_completed(job.id, _meta(n), posts)

    before = _commits(db)
    await asyncio.gather(*(complete(n, job) for n, job in enumerate(jobs)))
    # The batch's plain completion and its stores are two writes handed off in one turn of
    # the loop (FetchJobRepo._complete_batch), so one commit; this test is about the posts
    # indexed once, so it allows the writer's thread a wake between the two hand-offs. The
    # three stores as writes of their own would be more.
    assert _commits(db) - before <= 2
    found = await search_posts(db, parse("tomato"), PostFilter())
    assert len({hit.post.id for hit in found.hits}) == len(found.hits) == 9
    if isinstance(db, SqliteDatabase):  # FTS5's own count of the documents it holds
        rows = await db.fetchall("SELECT count(*) FROM posts_fts_docsize")
        assert rows[0][0] == 9
