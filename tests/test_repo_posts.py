"""PostRepo.upsert_many: new posts inserted, edited ones updated in place, identical untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rssd.models.dto import ErrorCode, FetchMeta, PostCreate
from rssd.repo.db import Database
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.posts import DatedPosts, PostRepo, UpsertCounts, dated_posts
from rssd.repo.sources import SourceRepo
from tests.support.config import make_config
from tests.support.jobs import ongoing_job, queue_job

pytestmark = pytest.mark.both_backends


def post(external_id: str, version: int = 1, **fields: Any) -> PostCreate:
    values: dict[str, Any] = {
        "external_id": external_id,
        "title": f"{external_id} v{version}",
        "url": f"http://a.example/{external_id}",
        "author": "Ann",
        "summary": f"summary v{version}",
        "content": f"<p>content v{version}</p>",
        "published_at": "2026-11-01T00:00:00.000Z",
        "updated_at": None,
        "content_hash": f"{external_id}-hash-v{version}",
    }
    return PostCreate(**{**values, **fields})


async def setup(db: Database, tmp_path: Path, sources: int = 1) -> tuple[list[int], list[int]]:
    """Sources, and one finished job per source for posts to point at."""
    urls = [f"http://s{i}.example/feed" for i in range(sources)]
    await SourceRepo(db).sync(make_config(tmp_path, urls))
    ids = [s.id for s in await SourceRepo(db).list()]
    jobs = FetchJobRepo(db)
    job_ids = []
    for source_id in ids:
        job = await queue_job(db, source_id)
        assert job is not None
        assert await jobs.mark_failed(job.id, ErrorCode.TIMEOUT, "") is not None
        job_ids.append(job.id)
    return ids, job_ids


async def new_job(db: Database, source_id: int) -> int:
    job = await ongoing_job(db, source_id)
    assert await FetchJobRepo(db).mark_completed(job.id, FetchMeta()) is not None
    return job.id


async def stored(db: Database) -> dict[str, dict[str, Any]]:
    rows = await db.fetchall("SELECT * FROM posts ORDER BY id")
    return {row["external_id"]: dict(row) for row in rows}


async def test_new_posts_are_inserted_and_counted(db: Database, tmp_path: Path) -> None:
    (source,), (job,) = await setup(db, tmp_path)
    counts = await PostRepo(db).upsert_many(source, job, [post("a"), post("b"), post("c")])
    assert counts == UpsertCounts(new=3, updated=0)
    rows = await stored(db)
    assert list(rows) == ["a", "b", "c"]
    a = rows["a"]
    expected = post("a").as_row()
    assert {key: a[key] for key in expected} == expected
    assert (a["content_source_id"], a["fetch_job_id"]) == (source, job)
    assert a["created_at"].endswith("Z")
    assert await PostRepo(db).count() == 3
    assert await PostRepo(db).count(source) == 3


async def test_identical_posts_are_left_untouched(db: Database, tmp_path: Path) -> None:
    (source,), (job,) = await setup(db, tmp_path)
    repo = PostRepo(db)
    await repo.upsert_many(source, job, [post("a"), post("b")])
    before = await stored(db)
    later_job = await new_job(db, source)
    counts = await repo.upsert_many(source, later_job, [post("a"), post("b")])
    assert counts == UpsertCounts(new=0, updated=0)
    after = await stored(db)
    assert after == before, "same ids, same content_hash, same fetch_job_id, same created_at"


async def test_an_edited_post_is_updated_in_place(db: Database, tmp_path: Path) -> None:
    (source,), (job,) = await setup(db, tmp_path)
    repo = PostRepo(db)
    await repo.upsert_many(source, job, [post("a"), post("b")])
    before = await stored(db)
    later_job = await new_job(db, source)
    counts = await repo.upsert_many(source, later_job, [post("a", 2), post("b")])
    assert counts == UpsertCounts(new=0, updated=1)
    after = await stored(db)
    assert len(after) == 2, "updated, not duplicated"
    edited = after["a"]
    assert edited["id"] == before["a"]["id"]
    assert edited["created_at"] == before["a"]["created_at"]
    assert edited["fetch_job_id"] == later_job, "the job that last wrote it"
    assert (edited["title"], edited["content"], edited["content_hash"]) == (
        "a v2",
        "<p>content v2</p>",
        "a-hash-v2",
    )
    assert after["b"] == before["b"]


async def test_an_edit_can_clear_fields(db: Database, tmp_path: Path) -> None:
    (source,), (job,) = await setup(db, tmp_path)
    repo = PostRepo(db)
    await repo.upsert_many(source, job, [post("a")])
    cleared = post("a", 2, author=None, summary=None, published_at=None)
    assert await repo.upsert_many(source, job, [cleared]) == UpsertCounts(new=0, updated=1)
    row = (await stored(db))["a"]
    assert (row["author"], row["summary"], row["published_at"]) == (None, None, None)


async def test_new_changed_and_unchanged_in_one_batch(db: Database, tmp_path: Path) -> None:
    (source,), (job,) = await setup(db, tmp_path)
    repo = PostRepo(db)
    await repo.upsert_many(source, job, [post("a"), post("b"), post("c")])
    counts = await repo.upsert_many(
        source, job, [post("a"), post("b", 2), post("d"), post("c", 3), post("e")]
    )
    assert counts == UpsertCounts(new=2, updated=2)
    rows = await stored(db)
    assert list(rows) == ["a", "b", "c", "d", "e"]
    assert [rows[k]["content_hash"] for k in rows] == [
        "a-hash-v1",
        "b-hash-v2",
        "c-hash-v3",
        "d-hash-v1",
        "e-hash-v1",
    ]


async def test_duplicate_ids_in_one_batch_collapse_first_wins(db: Database, tmp_path: Path) -> None:
    (source,), (job,) = await setup(db, tmp_path)
    counts = await PostRepo(db).upsert_many(source, job, [post("a", 1), post("a", 2), post("b")])
    assert counts == UpsertCounts(new=2, updated=0)
    assert (await stored(db))["a"]["content_hash"] == "a-hash-v1"


async def test_the_same_external_id_in_two_sources_is_two_posts(
    db: Database, tmp_path: Path
) -> None:
    (one, two), (job_one, job_two) = await setup(db, tmp_path, 2)
    repo = PostRepo(db)
    assert await repo.upsert_many(one, job_one, [post("a")]) == UpsertCounts(1, 0)
    assert await repo.upsert_many(two, job_two, [post("a", 2)]) == UpsertCounts(1, 0)
    assert (await repo.count(one), await repo.count(two), await repo.count()) == (1, 1, 2)
    # An edit in one source leaves the other alone.
    assert await repo.upsert_many(one, job_one, [post("a", 3)]) == UpsertCounts(0, 1)
    rows = await db.fetchall("SELECT content_source_id, content_hash FROM posts ORDER BY id")
    assert [tuple(r) for r in rows] == [(one, "a-hash-v3"), (two, "a-hash-v2")]


async def test_nothing_to_upsert(db: Database, tmp_path: Path) -> None:
    (source,), (job,) = await setup(db, tmp_path)
    assert await PostRepo(db).upsert_many(source, job, []) == UpsertCounts(0, 0)


async def test_a_post_without_a_job(db: Database, tmp_path: Path) -> None:
    (source,), _ = await setup(db, tmp_path)
    assert await PostRepo(db).upsert_many(source, None, [post("a")]) == UpsertCounts(1, 0)
    assert (await stored(db))["a"]["fetch_job_id"] is None


@pytest.mark.parametrize("size", [1500])
async def test_a_large_batch(db: Database, tmp_path: Path, size: int) -> None:
    (source,), (job,) = await setup(db, tmp_path)
    repo = PostRepo(db)
    batch = [post(f"id-{i}") for i in range(size)]
    assert await repo.upsert_many(source, job, batch) == UpsertCounts(size, 0)
    edited = [post(f"id-{i}", 2) if i % 10 == 0 else p for i, p in enumerate(batch)]
    assert await repo.upsert_many(source, job, edited) == UpsertCounts(0, size // 10)
    assert await repo.count(source) == size


@pytest.mark.parametrize(
    "external_id",
    ["http://a.example/post?id=1&x=2", "tag:a.example,2026:post/1", "urn:uuid:1", "ünïcødé ✓", ""],
)
async def test_external_ids_are_matched_exactly(
    db: Database, tmp_path: Path, external_id: str
) -> None:
    (source,), (job,) = await setup(db, tmp_path)
    repo = PostRepo(db)
    assert await repo.upsert_many(source, job, [post(external_id)]) == UpsertCounts(1, 0)
    assert await repo.upsert_many(source, job, [post(external_id)]) == UpsertCounts(0, 0)
    assert await repo.upsert_many(source, job, [post(external_id, 2)]) == UpsertCounts(0, 1)
    assert await repo.count() == 1


async def test_dated_posts_count_the_window_and_the_published_hours(
    db: Database, tmp_path: Path
) -> None:
    """The posting rate's input: posts dated in (since, now], stored and just fetched; the
    hours of the day counted from publication dates only (an undated post is dated when it
    was stored)."""
    (source,), (job,) = await setup(db, tmp_path)
    at = "2026-11-{:02d}T{:02d}:30:00.000Z".format
    await PostRepo(db).upsert_many(
        source,
        job,
        [
            post("old", published_at=at(1, 9)),  # before the window
            post("a", published_at=at(10, 9)),
            post("b", published_at=at(11, 9)),
            post("c", published_at=at(12, 23)),
            post("undated", published_at=None),  # dated by created_at: now, in the window
            post("future", published_at=at(30, 9)),  # after the window's end
        ],
    )
    fetched = [post("d", published_at=at(13, 0)), post("a", published_at=at(10, 9))]
    dated = await dated_posts(db, source, at(5, 0), "2100-01-01T00:00:00.000Z", fetched)
    # "a" is counted once: as fetched (its stored copy is left out), "future" counts
    # (the window here ends in 2100), "undated" counts but has no hour.
    assert dated.count == 6
    assert (dated.oldest, dated.newest) == (at(10, 9), dated.newest)
    assert dated.newest is not None and dated.newest > at(30, 9)  # the undated one: now
    expected = [0] * 24
    expected[9], expected[23], expected[0] = 3, 1, 1
    assert list(dated.hours) == expected
    window = await dated_posts(db, source, at(11, 0), at(12, 23))
    assert (window.count, window.oldest, window.newest) == (2, at(11, 9), at(12, 23))
    assert sum(window.hours) == 2


async def test_dated_posts_of_a_source_without_posts(db: Database, tmp_path: Path) -> None:
    (source,), _ = await setup(db, tmp_path)
    dated = await dated_posts(db, source, "2026-01-01T00:00:00.000Z", "2026-12-01T00:00:00.000Z")
    assert dated == DatedPosts(0, None, None, (0,) * 24)
