"""SourceRepo.sync: content_sources kept in step with config.toml."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rssd.models.config import Config, config_of
from rssd.models.dto import FetchMeta, PostCreate, Source
from rssd.repo.db import Database
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.posts import PostRepo
from rssd.repo.sources import SourceRepo, SourcesVersion, SyncReport
from tests.support.jobs import get, ongoing_job

pytestmark = pytest.mark.both_backends

A, B, C = "http://a.example/feed", "http://b.example/rss", "https://c.example/atom"


def config(tmp_path: Path, feeds: list[dict[str, Any]], **settings: Any) -> Config:
    return config_of({"database": str(tmp_path / "rssd.sqlite3"), "feeds": feeds, **settings})


def feed(url: str, **settings: Any) -> dict[str, Any]:
    return {"url": url, **settings}


def report(
    added: tuple[str, ...] = (), updated: tuple[str, ...] = (), disabled: tuple[str, ...] = ()
) -> SyncReport:
    return SyncReport(added, updated, disabled)


async def by_url(db: Database) -> dict[str, Source]:
    return {source.url: source for source in await SourceRepo(db).list()}


async def test_new_feeds_are_inserted_with_the_effective_settings(
    db: Database, tmp_path: Path
) -> None:
    repo = SourceRepo(db)
    result = await repo.sync(
        config(
            tmp_path,
            [feed(A, name="A"), feed(B, interval_minutes=5, timeout_seconds=2.5), feed(C)],
            interval_minutes=45,
            timeout_seconds=12,
        )
    )
    assert result == report(added=(A, B, C))
    assert result.changed
    sources = await by_url(db)
    assert list(sources) == [A, B, C]
    a, b, c = sources[A], sources[B], sources[C]
    assert (a.name, a.interval_minutes, a.timeout_seconds, a.enabled) == ("A", 45, 12.0, True)
    assert (b.name, b.interval_minutes, b.timeout_seconds) == (None, 5, 2.5)
    assert c.created_at == c.updated_at
    assert c.created_at.endswith("Z")
    assert await repo.get(a.id) == a
    assert await repo.get_by_url(B) == b
    assert await repo.get(9999) is None
    assert await repo.get_by_url("http://nope.example/") is None


async def test_syncing_the_same_config_again_reports_nothing(db: Database, tmp_path: Path) -> None:
    repo = SourceRepo(db)
    cfg = config(tmp_path, [feed(A, name="A"), feed(B, enabled=False), feed(C, timeout_seconds=3)])
    await repo.sync(cfg)
    before = await repo.list()
    result = await repo.sync(cfg)
    assert result == report()
    assert not result.changed
    assert await repo.list() == before, "not even updated_at moves"


@dataclass(frozen=True)
class SyncCase:
    before: list[dict[str, Any]]  # the feeds first synced
    after: list[dict[str, Any]]  # the feeds synced next
    settings: dict[str, Any]  # top-level settings of the second config
    expected: SyncReport
    check: dict[str, dict[str, Any]]  # url -> Source attributes after the second sync


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            SyncCase(
                [feed(A), feed(B)],
                [feed(A, name="Renamed"), feed(B)],
                {},
                report(updated=(A,)),
                {A: {"name": "Renamed"}},
            ),
            id="rename",
        ),
        pytest.param(
            SyncCase([feed(A, name="A")], [feed(A)], {}, report(updated=(A,)), {A: {"name": None}}),
            id="name-removed",
        ),
        pytest.param(
            SyncCase(
                [feed(A), feed(B)],
                [feed(A, interval_minutes=7), feed(B)],
                {},
                report(updated=(A,)),
                {A: {"interval_minutes": 7}, B: {"interval_minutes": 60}},
            ),
            id="feed-interval",
        ),
        pytest.param(
            SyncCase(
                [feed(A), feed(B)],
                [feed(A, timeout_seconds=4.5), feed(B)],
                {},
                report(updated=(A,)),
                {A: {"timeout_seconds": 4.5}},
            ),
            id="feed-timeout",
        ),
        pytest.param(
            SyncCase(
                [feed(A), feed(B, interval_minutes=5)],
                [feed(A), feed(B, interval_minutes=5)],
                {"interval_minutes": 30},
                report(updated=(A,)),
                {A: {"interval_minutes": 30}, B: {"interval_minutes": 5}},
            ),
            id="global-default-reaches-feeds-without-override",
        ),
        pytest.param(
            SyncCase(
                [feed(A), feed(B)],
                [feed(A, enabled=False), feed(B)],
                {},
                report(updated=(A,)),
                {A: {"enabled": False}},
            ),
            id="disabled-in-config",
        ),
        pytest.param(
            SyncCase(
                [feed(A), feed(B)], [feed(A)], {}, report(disabled=(B,)), {B: {"enabled": False}}
            ),
            id="removed-from-config",
        ),
        pytest.param(
            SyncCase([feed(A)], [feed(A), feed(B)], {}, report(added=(B,)), {B: {"enabled": True}}),
            id="added",
        ),
        pytest.param(
            SyncCase(
                [feed(A), feed(B)],
                [feed(C), feed(A, name="x")],
                {},
                report(added=(C,), updated=(A,), disabled=(B,)),
                {A: {"name": "x"}, B: {"enabled": False}, C: {"enabled": True}},
            ),
            id="everything-at-once",
        ),
        pytest.param(
            SyncCase(
                [feed(A), feed(B)],
                [],
                {},
                report(disabled=(A, B)),
                {A: {"enabled": False}, B: {"enabled": False}},
            ),
            id="all-removed",
        ),
    ],
)
async def test_sync_applies_each_kind_of_change(
    db: Database, tmp_path: Path, case: SyncCase
) -> None:
    before, after, settings, expected, check = (
        case.before,
        case.after,
        case.settings,
        case.expected,
        case.check,
    )
    repo = SourceRepo(db)
    await repo.sync(config(tmp_path, before))
    old = await by_url(db)
    assert await repo.sync(config(tmp_path, after, **settings)) == expected
    new = await by_url(db)
    for url, values in check.items():
        assert {key: getattr(new[url], key) for key in values} == values
    for url in old:
        assert new[url].id == old[url].id, "a row is never replaced"
        assert new[url].created_at == old[url].created_at
    changed = {*expected.updated, *expected.disabled}
    for url in set(old) - changed:
        assert new[url] == old[url]
    assert await repo.sync(config(tmp_path, after, **settings)) == report(), "idempotent"


async def test_a_removed_feed_keeps_its_posts_and_comes_back_when_re_added(
    db: Database, tmp_path: Path
) -> None:
    repo = SourceRepo(db)
    await repo.sync(config(tmp_path, [feed(A, name="A"), feed(B)]))
    source = await repo.get_by_url(A)
    assert source is not None
    jobs = FetchJobRepo(db)
    job = await ongoing_job(db, source.id)
    posts = [PostCreate(external_id=f"p{i}", content_hash=f"h{i}") for i in range(3)]
    assert await jobs.mark_completed(job.id, FetchMeta(), posts) is not None

    assert await repo.sync(config(tmp_path, [feed(B)])) == report(disabled=(A,))
    removed = await repo.get_by_url(A)
    assert removed is not None
    assert not removed.enabled
    assert [s.url for s in await repo.list(enabled_only=True)] == [B]
    assert [s.url for s in await repo.list()] == [A, B]
    assert await PostRepo(db).count(source.id) == 3, "posts are kept"
    assert await get(db, job.id) is not None, "so is the audit trail"

    assert await repo.sync(config(tmp_path, [feed(B)])) == report(), "disabled once only"

    assert await repo.sync(config(tmp_path, [feed(A, name="A"), feed(B)])) == report(updated=(A,))
    back = await repo.get_by_url(A)
    assert back is not None
    assert back.enabled
    assert back.id == source.id, "the same row, with its history"
    assert await PostRepo(db).count(source.id) == 3


async def test_list_enabled_only(db: Database, tmp_path: Path) -> None:
    repo = SourceRepo(db)
    await repo.sync(config(tmp_path, [feed(A), feed(B, enabled=False), feed(C)]))
    assert [s.url for s in await repo.list(enabled_only=True)] == [A, C]
    assert [(s.url, s.enabled) for s in await repo.list()] == [(A, True), (B, False), (C, True)]


async def test_the_version_changes_with_every_change_to_which_sources_are_enabled(
    db: Database, tmp_path: Path
) -> None:
    """What the pipeline's index of sources by URL is kept by (rssd/daemon/pipeline.py):
    each change of which sources are enabled gives a version other than the one before
    it, even within one millisecond (the counts and sums tell them apart), and one
    version never stands for two different sets; a sync that changes nothing, or a feed
    URL discovered on a page, leaves it as it is."""
    repo = SourceRepo(db)

    async def state() -> tuple[SourcesVersion, set[str]]:
        return await repo.version(), {s.url for s in await repo.list(enabled_only=True)}

    sets: dict[SourcesVersion, set[str]] = {}
    before = await state()
    for feeds in ([feed(A), feed(B)], [feed(A)], [feed(A), feed(B)], [feed(A), feed(C)], [feed(B)]):
        await repo.sync(config(tmp_path, feeds))
        after = await state()
        assert after[0] != before[0], feeds
        assert sets.setdefault(after[0], after[1]) == after[1], feeds
        before = after
    await repo.sync(config(tmp_path, [feed(B)]))
    source = await repo.get_by_url(B)
    assert source is not None
    await repo.set_feed_url(source.id, C)
    assert await repo.version() == before[0]
