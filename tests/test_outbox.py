"""The outbox: messages written with the posts they announce, to subscribers only, through
their filters; the backlog rule; edits not announced; large fetches split."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rssd.clock import to_iso
from rssd.daemon.startup import sync_sources
from rssd.models.config import Config, config_of
from rssd.models.dto import FetchMeta, PostCreate
from rssd.models.outbox import Feed, StoredPost, Subscriber, new_message_id, plan_messages
from rssd.repo.db import Database
from rssd.repo.digests import close_due
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.open import open_database
from rssd.repo.outbox import OutboxRepo
from tests.conftest import FeedServer, rss
from tests.support.commands import run_once_from
from tests.support.jobs import ongoing_job, recover
from tests.support.webhooks import SECRETS, make_config, user

pytestmark = pytest.mark.both_backends

A, B = "http://a.example/feed", "http://b.example/rss"
HOOK = "https://hooks.example/"


def post(n: int, title: str | None = None, content_hash: str = "h") -> PostCreate:
    return PostCreate(
        external_id=f"id-{n}",
        title=title or f"Post {n}",
        url=f"https://a.example/{n}",
        summary=f"summary {n}",
        content_hash=f"{content_hash}{n}",
    )


async def fetch(db: Database, url: str, posts: list[PostCreate]) -> int:
    """One completed fetch of ``url`` storing ``posts``; returns the messages it queued."""
    row = await db.fetchone("SELECT id FROM content_sources WHERE url = :url", {"url": url})
    assert row is not None
    job = await ongoing_job(db, row[0])
    recorded = await FetchJobRepo(db).mark_completed(job.id, FetchMeta(http_status=200), posts, b"")
    assert recorded is not None
    return recorded[1].messages


async def messages(db: Database) -> list[tuple[str, str, list[str]]]:
    """(user, feed url, external ids) per queued message, in id order."""
    rows = await db.fetchall(
        "SELECT u.name, d.body FROM deliveries d JOIN users u ON u.id = d.user_id ORDER BY d.id"
    )
    out = []
    for row in rows:
        body = json.loads(row["body"])
        assert body["type"] == "posts.new"
        assert body["data"]["user"] == row["name"]
        ids = [p["external_id"] for p in body["data"]["posts"]]
        out.append((row["name"], body["data"]["feed"]["url"], ids))
    return out


async def setup(db: Database, tmp_path: Path, users: list[dict[str, Any]]) -> Config:
    config = make_config(tmp_path, [A, B], users)
    await sync_sources(db, config)
    return config


async def test_new_posts_reach_subscribers_only(db: Database, tmp_path: Path) -> None:
    await setup(
        db,
        tmp_path,
        [
            user("alice", HOOK, [A], notify_backlog=True),
            user("bob", HOOK, [B], notify_backlog=True),
            user("carol", HOOK, ["*"], notify_backlog=True),
        ],
    )
    assert await fetch(db, A, [post(1), post(2)]) == 2
    assert await messages(db) == [
        ("alice", A, ["id-1", "id-2"]),
        ("carol", A, ["id-1", "id-2"]),
    ]


async def test_the_body_carries_the_stored_post(db: Database, tmp_path: Path) -> None:
    await setup(db, tmp_path, [user("alice", HOOK, [A], notify_backlog=True)])
    await fetch(db, A, [post(1)])
    row = await db.fetchone("SELECT body, posts_count, status, attempts FROM deliveries")
    assert row is not None
    body = json.loads(row["body"])
    stored = await db.fetchone("SELECT id, content_source_id FROM posts")
    assert stored is not None
    assert body["data"]["feed"] == {"id": stored["content_source_id"], "url": A, "name": None}
    assert body["data"]["posts"] == [
        {
            "id": stored["id"],
            "external_id": "id-1",
            "title": "Post 1",
            "url": "https://a.example/1",
            "author": None,
            "published_at": None,
            "summary": "summary 1",
        }
    ]
    assert body["timestamp"].endswith("Z")
    assert (row["posts_count"], row["status"], row["attempts"]) == (1, "pending", 0)


async def test_the_body_never_carries_the_feeds_credentials(db: Database, tmp_path: Path) -> None:
    """A receiver is a third party: the feed's ``user:password@`` is left out entirely."""
    private = "http://alice:s3cret@a.example/private"
    config = make_config(tmp_path, [private], [user("alice", HOOK, [private], notify_backlog=True)])
    await sync_sources(db, config)
    await fetch(db, private, [post(1)])
    row = await db.fetchone("SELECT body FROM deliveries")
    assert row is not None
    assert json.loads(row["body"])["data"]["feed"]["url"] == "http://a.example/private"
    assert "s3cret" not in row["body"] and "alice:" not in row["body"]


async def test_without_any_subscription_a_store_queues_nothing_and_primes_nothing(
    db: Database, tmp_path: Path
) -> None:
    """No [[users]]: the store asks one question (is anybody subscribed to anything?) and
    writes nothing; a user who subscribes later is told from the next fetch on."""
    config = await setup(db, tmp_path, [])
    assert await fetch(db, A, [post(1)]) == 0
    assert await fetch(db, A, [post(1), post(2)]) == 0
    assert await messages(db) == []
    await sync_sources(
        db,
        replace(config, users=make_config(tmp_path, [A, B], [user("bob", HOOK, [A])]).users),
    )
    assert await fetch(db, A, [post(1), post(2), post(3)]) == 1
    assert await messages(db) == [("bob", A, ["id-3"])]


async def test_no_backlog_skips_the_first_fetch_of_a_new_feed(db: Database, tmp_path: Path) -> None:
    await setup(db, tmp_path, [user("alice", HOOK, [A])])
    assert await fetch(db, A, [post(1), post(2)]) == 0
    assert await fetch(db, A, [post(1), post(2), post(3)]) == 1
    assert await messages(db) == [("alice", A, ["id-3"])]


async def test_an_empty_first_fetch_primes_the_subscription(db: Database, tmp_path: Path) -> None:
    """A new feed with no posts yet is primed by its empty first fetch, so its first real
    post is news, not backlog."""
    await setup(db, tmp_path, [user("alice", HOOK, [A])])
    assert await fetch(db, A, []) == 0
    assert await fetch(db, A, [post(1)]) == 1
    assert await messages(db) == [("alice", A, ["id-1"])]


async def test_subscribing_later_to_a_fetched_feed_announces_its_next_news(
    db: Database, tmp_path: Path
) -> None:
    config = await setup(db, tmp_path, [])
    await fetch(db, A, [post(1)])
    await sync_sources(
        db,
        replace(config, users=make_config(tmp_path, [A, B], [user("alice", HOOK, [A])]).users),
    )
    assert await fetch(db, A, [post(1), post(2)]) == 1
    assert await messages(db) == [("alice", A, ["id-2"])]


async def test_edited_posts_are_not_announced(db: Database, tmp_path: Path) -> None:
    await setup(db, tmp_path, [user("alice", HOOK, [A], notify_backlog=True)])
    await fetch(db, A, [post(1)])
    assert await fetch(db, A, [post(1, "Post 1, corrected", content_hash="edited")]) == 0
    assert len(await messages(db)) == 1


async def test_filters_apply_per_user(db: Database, tmp_path: Path) -> None:
    await setup(
        db,
        tmp_path,
        [
            user("alice", HOOK, [A], notify_backlog=True, keep=["title=(?i)python"]),
            user("bob", HOOK, [A], notify_backlog=True, block=["title=(?i)python"]),
            user("carol", HOOK, [A], notify_backlog=True, keep=["title=rust"]),
        ],
    )
    await fetch(db, A, [post(1, "Python news"), post(2, "Other")])
    assert await messages(db) == [("alice", A, ["id-1"]), ("bob", A, ["id-2"])]


async def test_a_large_fetch_is_split(db: Database, tmp_path: Path) -> None:
    await setup(db, tmp_path, [user("alice", HOOK, [A], notify_backlog=True)])
    assert await fetch(db, A, [post(n) for n in range(250)]) == 3
    sizes = [len(ids) for _, _, ids in await messages(db)]
    assert sizes == [100, 100, 50]
    announced = [i for _, _, ids in await messages(db) for i in ids]
    assert announced == [f"id-{n}" for n in range(250)]


async def test_disabled_and_removed_users_get_nothing(db: Database, tmp_path: Path) -> None:
    config = await setup(
        db,
        tmp_path,
        [
            user("alice", HOOK, [A], notify_backlog=True),
            user("bob", HOOK, [A], notify_backlog=True),
        ],
    )
    await db.write(
        lambda tx: tx.execute("UPDATE users SET disabled_reason = 'gone' WHERE name = 'alice'")
    )
    await sync_sources(db, replace(config, users=config.users[:1]))  # bob removed
    assert await fetch(db, A, [post(1)]) == 0


async def test_a_job_no_longer_ongoing_writes_no_message(db: Database, tmp_path: Path) -> None:
    await setup(db, tmp_path, [user("alice", HOOK, [A], notify_backlog=True)])
    row = await db.fetchone("SELECT id FROM content_sources WHERE url = :url", {"url": A})
    assert row is not None
    job = await ongoing_job(db, row[0])
    assert await recover(db) == [job.id]
    assert await FetchJobRepo(db).mark_completed(job.id, FetchMeta(), [post(1)], b"") is None
    assert await messages(db) == []


def test_message_ids_sort_by_creation() -> None:
    ids = [new_message_id(1000), new_message_id(1000), new_message_id(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    assert all(i.startswith("msg_") and "." not in i for i in ids)


FEED = Feed(1, A, "A")
POSTS = [StoredPost(n, post(n, title)) for n, title in enumerate(["Python", "Rust", "Go"])]


@pytest.mark.parametrize(
    ("subscribers", "chunk", "expected"),
    [
        ([], 100, []),
        ([Subscriber(1, "alice")], 100, [(1, 3)]),
        ([Subscriber(1, "alice")], 2, [(1, 2), (1, 1)]),
        ([Subscriber(1, "alice", keep=("title=^R",))], 100, [(1, 1)]),
        ([Subscriber(1, "alice", keep=("title=nothing",))], 100, []),
        ([Subscriber(1, "a"), Subscriber(2, "b", block=("title=.",))], 100, [(1, 3)]),
    ],
)
def test_plan_messages(
    subscribers: list[Subscriber], chunk: int, expected: list[tuple[int, int]]
) -> None:
    planned = plan_messages(subscribers, FEED, POSTS, "2026-11-30T00:00:00.000Z", chunk)
    assert [(m.user_id, m.posts_count) for m in planned] == expected
    assert all(json.loads(m.body)["timestamp"] == "2026-11-30T00:00:00.000Z" for m in planned)


async def test_a_category_filter_reads_the_feeds_category(db: Database, tmp_path: Path) -> None:
    config = config_of(
        {
            "database": str(tmp_path / "rssd.sqlite3"),
            "feeds": [{"url": A, "category": "Blogs / Linux"}, {"url": B, "category": "News"}],
            "users": [user("alice", HOOK, ["*"], notify_backlog=True, keep=["category=^Blogs"])],
        }
    )
    await sync_sources(db, config)
    assert await fetch(db, A, [post(1)]) == 1
    assert await fetch(db, B, [post(2)]) == 0
    assert await messages(db) == [("alice", A, ["id-1"])]


async def test_a_feeds_first_messages_name_it_by_the_title_that_fetch_learned(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    """No ``name`` in config.toml: the webhook's ``feed.name`` is the feed's own title,
    also in the messages of the very fetch that read it first."""
    url = feed_server.static("/feed", rss([{"title": "One", "guid": "1"}], title="Jane's log"))
    config = tmp_path / "config.toml"
    config.write_text(
        f'database = "{db_target}"\n[[feeds]]\nurl = "{url}"\n'
        f'[[users]]\nname = "alice"\nwebhook_url = "{HOOK}"\nsecret = "{SECRETS["alice"]}"\n'
        'feeds = ["*"]\nnotify_backlog = true\n'
    )
    await run_once_from(config)
    db = await open_database(db_target)
    try:
        row = await db.fetchone("SELECT body FROM deliveries")
    finally:
        await db.close()
    assert row is not None
    assert json.loads(row["body"])["data"]["feed"]["name"] == "Jane's log"


# One notification per story.


def story(n: int, url: str, guid: str | None = None) -> PostCreate:
    return PostCreate(
        external_id=guid or f"guid-{n}", title=f"Story {n}", url=url, content_hash=f"s{n}"
    )


async def skipped(db: Database) -> list[tuple[str, str, str]]:
    rows = await db.fetchall(
        "SELECT u.name, s.story, p.external_id FROM skipped_posts s "
        "JOIN users u ON u.id = s.user_id JOIN posts p ON p.id = s.post_id ORDER BY s.post_id"
    )
    return [(row[0], row[1], row[2]) for row in rows]


async def test_a_story_from_another_feed_is_announced_once(db: Database, tmp_path: Path) -> None:
    await setup(
        db,
        tmp_path,
        [
            user("alice", HOOK, [A, B], notify_backlog=True),
            user("bob", HOOK, [B], notify_backlog=True),
            user("carol", HOOK, [A, B], notify_backlog=True, dedupe_days=0),
        ],
    )
    await fetch(db, A, [story(1, "https://news.example/1"), story(2, "https://news.example/2")])
    # B carries story 1 under another scheme, host case and tracking, and story 2 by guid.
    await fetch(
        db,
        B,
        [
            story(11, "http://WWW.news.example/1/?utm_source=rss#top", "b-1"),
            story(12, "https://elsewhere.example/2", "guid-2"),
            story(13, "https://news.example/3"),
        ],
    )
    assert await messages(db) == [
        ("alice", A, ["guid-1", "guid-2"]),
        ("carol", A, ["guid-1", "guid-2"]),
        ("alice", B, ["guid-13"]),
        ("bob", B, ["b-1", "guid-2", "guid-13"]),  # bob never saw A's
        ("carol", B, ["b-1", "guid-2", "guid-13"]),  # dedupe_days = 0: every post
    ]
    assert await skipped(db) == [
        ("alice", "link:news.example/1", "b-1"),
        ("alice", "guid:guid-2", "guid-2"),
    ]


async def test_a_story_told_longer_ago_than_dedupe_days_is_told_again(
    db: Database, tmp_path: Path
) -> None:
    await setup(db, tmp_path, [user("alice", HOOK, [A, B], notify_backlog=True, dedupe_days=2)])
    await fetch(db, A, [story(1, "https://news.example/1")])
    await db.write(
        lambda tx: tx.execute(
            "UPDATE announced SET announced_at = :then", {"then": "2020-01-01T00:00:00.000Z"}
        )
    )
    await fetch(db, B, [story(2, "https://news.example/1", "other")])
    assert [m[2] for m in await messages(db)] == [["guid-1"], ["other"]]
    assert await skipped(db) == []


async def test_pruning_forgets_old_skips_and_stories(db: Database, tmp_path: Path) -> None:
    await setup(db, tmp_path, [user("alice", HOOK, [A, B], notify_backlog=True)])
    await fetch(db, A, [story(1, "https://news.example/1"), story(2, "https://news.example/2")])
    await fetch(db, B, [story(3, "https://news.example/1", "b-1")])
    assert len(await skipped(db)) == 1
    await db.write(
        lambda tx: tx.execute(
            "UPDATE announced SET announced_at = :then WHERE post_id = 1",
            {"then": "2020-01-01T00:00:00.000Z"},
        )
    )
    await OutboxRepo(db).prune("9999-01-01T00:00:00.000Z")
    assert await skipped(db) == []
    left = await db.fetchall("SELECT story FROM announced ORDER BY story")
    assert [row[0] for row in left] == ["guid:guid-2", "link:news.example/2"]


# Digests.


async def test_a_digest_users_posts_wait_for_the_period_then_go_in_one_message(
    db: Database, tmp_path: Path
) -> None:
    await setup(
        db,
        tmp_path,
        [
            user("alice", HOOK, [A, B], notify_backlog=True, digest="1h"),
            user("bob", HOOK, [A], notify_backlog=True),
        ],
    )
    await fetch(db, A, [post(1), post(2)])
    await fetch(db, B, [story(3, "https://b.example/3")])
    assert [m[0] for m in await messages(db)] == ["bob"]  # alice's wait
    now = datetime.now(UTC)
    assert await close_due(db, now, to_iso(now)) == 0, "the period is still open"
    later = now + timedelta(hours=1, seconds=1)
    assert await close_due(db, later, to_iso(later)) == 1
    assert await close_due(db, later, to_iso(later)) == 0, "written once"
    row = await db.fetchone(
        "SELECT d.body, d.posts_count FROM deliveries d JOIN users u ON u.id = d.user_id "
        "WHERE u.name = 'alice'"
    )
    assert row is not None and row["posts_count"] == 3
    body = json.loads(row["body"])
    assert body["type"] == "posts.digest"
    assert [(f["url"], [p["external_id"] for p in f["posts"]]) for f in body["data"]["feeds"]] == [
        (A, ["id-1", "id-2"]),
        (B, ["guid-3"]),
    ]
    assert await db.fetchall("SELECT * FROM digest_items") == []


async def test_include_content_carries_stored_tags_and_enclosures(
    db: Database, tmp_path: Path
) -> None:
    await setup(
        db,
        tmp_path,
        [
            user("alice", HOOK, [A], notify_backlog=True, include_content=True),
            user("bob", HOOK, [A], notify_backlog=True),
        ],
    )
    enclosures = '[{"url": "https://a.example/1.mp3", "type": "audio/mpeg", "length": 42}]'
    stored = PostCreate(
        external_id="id-1",
        title="One",
        content="<p>Body</p>",
        updated_at="2026-12-04T11:00:00.000Z",
        tags='["linux", "go"]',
        enclosures=enclosures,
        content_hash="h1",
    )
    await fetch(db, A, [stored])
    row = await db.fetchone("SELECT tags, enclosures FROM posts WHERE external_id = 'id-1'")
    assert row is not None and (row["tags"], row["enclosures"]) == ('["linux", "go"]', enclosures)
    bodies = {
        r["name"]: json.loads(r["body"])["data"]["posts"][0]
        for r in await db.fetchall(
            "SELECT u.name, d.body FROM deliveries d JOIN users u ON u.id = d.user_id"
        )
    }
    assert bodies["alice"]["tags"] == ["linux", "go"]
    assert bodies["alice"]["enclosures"] == json.loads(enclosures)
    assert (bodies["alice"]["content"], bodies["alice"]["updated_at"]) == (
        "<p>Body</p>",
        "2026-12-04T11:00:00.000Z",
    )
    assert "category" in bodies["alice"]
    assert "tags" not in bodies["bob"]


async def test_a_user_with_one_feed_has_no_story_record(db: Database, tmp_path: Path) -> None:
    """No story can reach them twice, so nothing is written for them."""
    await setup(db, tmp_path, [user("alice", HOOK, [A], notify_backlog=True)])
    await fetch(db, A, [story(1, "https://news.example/1")])
    assert await db.fetchall("SELECT * FROM announced") == []
    assert [m[2] for m in await messages(db)] == [["guid-1"]]


C = "http://c.example/mirror"


async def page_of(db: Database, page: str, feed_url: str) -> None:
    """``page`` found to be a page whose feed is ``feed_url`` (what discovery records)."""
    await db.write_one(
        "UPDATE content_sources SET feed_url = :feed_url WHERE url = :url",
        {"url": page, "feed_url": feed_url},
    )


async def test_a_pages_users_are_told_of_its_configured_feeds_posts_once(
    db: Database, tmp_path: Path
) -> None:
    """A is a page whose feed is B, both configured: A stores nothing, and B's new posts
    go to A's users too, each once, through their own filters and digests; the feed's
    first fetch (its backlog) only to B's own subscribers."""
    config = make_config(
        tmp_path,
        [A, B, C],
        [
            user("alice", HOOK, [A], notify_backlog=True),
            user("bob", HOOK, [A, B], notify_backlog=True),
            user("carol", HOOK, [A], notify_backlog=True, digest="1h"),
            user("dave", HOOK, [A], notify_backlog=True, block=["title=(?i)sponsored"]),
            user("erin", HOOK, [A, C], notify_backlog=True),
        ],
    )
    await sync_sources(db, config)
    await page_of(db, A, "HTTP://B.EXAMPLE/rss")  # compared normalized, as same_feeds does
    assert await fetch(db, B, [post(1)]) == 1
    assert await messages(db) == [("bob", B, ["id-1"])]
    await fetch(db, C, [post(2)])  # erin is told story 2 by another feed first
    await db.write_one("DELETE FROM deliveries")

    assert await fetch(db, B, [post(2), post(3, "Sponsored 3")]) == 4
    assert await messages(db) == [
        ("alice", B, ["id-2", "id-3"]),
        ("bob", B, ["id-2", "id-3"]),
        ("dave", B, ["id-2"]),
        ("erin", B, ["id-3"]),
    ]
    skipped = await OutboxRepo(db).skipped()
    assert [(s.user_name, s.story) for s in skipped] == [("erin", "link:a.example/2")]
    later = datetime.now(UTC) + timedelta(hours=1, seconds=1)
    assert await close_due(db, later, to_iso(later)) == 1
    digest = (await messages_of(db, "carol"))[0]
    assert [[p["external_id"] for p in f["posts"]] for f in digest["data"]["feeds"]] == [
        ["id-2", "id-3"]
    ]


async def messages_of(db: Database, name: str) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT d.body FROM deliveries d JOIN users u ON u.id = d.user_id "
        "WHERE u.name = :name ORDER BY d.id",
        {"name": name},
    )
    return [json.loads(row["body"]) for row in rows]


async def test_a_pages_user_is_told_once_the_page_has_primed_their_subscription(
    db: Database, tmp_path: Path
) -> None:
    """A page subscription that has not seen a completed fetch yet is not primed: the
    feed's posts reach its user only after the page's first completed fetch; a page
    that is disabled, or leads to another feed, brings no one."""
    config = make_config(
        tmp_path,
        [A, B, C],
        [user("alice", HOOK, [A]), user("bob", HOOK, [C], notify_backlog=True)],
    )
    await sync_sources(db, config)
    await page_of(db, A, B)
    await page_of(db, C, "http://b.example/other")
    await fetch(db, B, [post(1)])
    assert await fetch(db, B, [post(2)]) == 0, "alice's page subscription is not primed"
    await fetch(db, A, [])  # the page's fetch: stores nothing, primes alice
    assert await fetch(db, B, [post(3)]) == 1
    assert await messages(db) == [("alice", B, ["id-3"])]
    await db.write_one("UPDATE content_sources SET enabled = 0 WHERE url = :url", {"url": A})
    assert await fetch(db, B, [post(4)]) == 0
