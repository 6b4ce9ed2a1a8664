"""Searching the stored posts (rssd/repo/search.py) on both backends: ranking, phrases,
exclusion, filters, hostile queries, the index kept in step with edits, retention and
hand-made deletes, and the index built for the posts of a database from before it."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest
from msgspec.structs import replace

from rssd.daemon.search_backfill import build_index
from rssd.models.dto import PostCreate
from rssd.models.search import QueryError, document, parse
from rssd.repo.db import Database
from rssd.repo.migrations import SCHEMA_VERSION
from rssd.repo.open import open_database
from rssd.repo.outbox import OutboxRepo
from rssd.repo.posts import PostRepo
from rssd.repo.queries import PostFilter
from rssd.repo.search import (
    backfill_batch,
    backfill_state,
    search_posts,
    search_query,
    walks_newest,
)
from rssd.repo.sources import SourceRepo
from rssd.repo.sqlite import SqliteDatabase
from tests.support.config import make_config
from tests.support.webhooks import user
from tests.test_outbox import HOOK, A, fetch, setup
from tests.test_outbox import post as announced

pytestmark = pytest.mark.both_backends

#: Posts that match none of the tests' words, so that the words are rare (as in a real
#: database) and ranking by them means something.
FILLER = 12


def post(key: str, title: str = "", body: str = "", **fields: Any) -> PostCreate:
    return PostCreate(
        external_id=key,
        title=title,
        content=body,
        content_hash=f"{key}:{title}:{body}:{fields}",
        published_at=fields.pop("published_at", "2026-11-01T00:00:00.000Z"),
        **fields,
    )


async def store(db: Database, tmp_path: Path, posts: list[PostCreate], feeds: int = 1) -> None:
    urls = [f"http://s{i}.example/feed" for i in range(feeds)]
    await SourceRepo(db).sync(make_config(tmp_path, urls))
    filler = [
        post(f"filler-{i}", f"weather report {i}", "<p>rain and sun</p>") for i in range(FILLER)
    ]
    await PostRepo(db).upsert_many(1, None, [*posts, *filler])


async def found(db: Database, text: str, **filters: Any) -> list[str]:
    found = await search_posts(db, parse(text), PostFilter(**filters))
    return [hit.post.external_id for hit in found.hits]


async def assert_index_sound(db: Database) -> None:
    """SQLite: FTS5's own check, and the queue applied. (PostgreSQL's column cannot drift.)"""
    if isinstance(db, SqliteDatabase):
        await db.write(
            lambda tx: tx.execute("INSERT INTO posts_fts (posts_fts) VALUES ('integrity-check')")
        )
        row = await db.fetchone("SELECT count(*) FROM search_queue")
        assert row is not None and row[0] == 0
        # Every post indexed, once, and nothing else (outside a backfill).
        missing = await db.fetchone(
            "SELECT (SELECT count(*) FROM posts WHERE id NOT IN "
            "(SELECT id FROM posts_fts_docsize)), (SELECT count(*) FROM posts_fts_docsize "
            "WHERE id NOT IN (SELECT id FROM posts))"
        )
        assert missing is not None and tuple(missing) == (0, 0)
        row = await db.fetchone("SELECT count(*) FROM search_direct")
        assert row is not None and row[0] == 0, "rssd's own inserts are over"


async def test_ranking_title_over_text_and_more_over_fewer(db: Database, tmp_path: Path) -> None:
    await store(
        db,
        tmp_path,
        [
            post(
                "once", "An essay", "<p>It mentions asyncio once among many other words here.</p>"
            ),
            post("title", "Asyncio in depth", "<p>An essay about event loops.</p>"),
            post("often", "Notes", "<p>asyncio, asyncio and more asyncio.</p>"),
            post("none", "Django", "<p>Nothing about it.</p>"),
        ],
    )
    assert await found(db, "asyncio") == ["title", "often", "once"]
    await assert_index_sound(db)


async def test_phrases_match_adjacent_words_in_order(db: Database, tmp_path: Path) -> None:
    await store(
        db,
        tmp_path,
        [
            post("adjacent", "Using a task group", ""),
            post("apart", "A group of task runners", ""),
            post("hyphen", "task-group patterns", ""),
        ],
    )
    assert sorted(await found(db, '"task group"')) == ["adjacent", "hyphen"]
    assert sorted(await found(db, "task group")) == ["adjacent", "apart", "hyphen"]


async def test_exclusion_and_either(db: Database, tmp_path: Path) -> None:
    await store(
        db,
        tmp_path,
        [
            post("py", "Python web", "<p>flask</p>"),
            post("dj", "Python web", "<p>django</p>"),
            post("rb", "Ruby web", "<p>rails</p>"),
        ],
    )
    assert await found(db, "web -django") in (["py", "rb"], ["rb", "py"])
    # A phrase never spans two fields (here the title's end and the text's start).
    assert sorted(await found(db, 'python -"web django"')) == ["dj", "py"]
    assert sorted(await found(db, "flask OR rails")) == ["py", "rb"]
    assert sorted(await found(db, "web flask OR rails")) == ["py", "rb"]
    assert await found(db, "python -python") == []


async def test_text_without_html_with_entities_and_accents(db: Database, tmp_path: Path) -> None:
    await store(
        db,
        tmp_path,
        [
            post(
                "html",
                "Plain",
                '<p><a href="http://x.example/">Tom</a> &amp; <strong>Jerry</strong></p>',
            ),
            post("cafe", "Café crème", ""),
            post("author", "Untitled", "", author="Ada Lovelace"),
        ],
    )
    assert await found(db, "jerry") == ["html"]
    for markup in ("href", "strong", "amp", "http", "example"):
        assert await found(db, markup) == [], markup
    assert await found(db, "CAFE creme") == ["cafe"]
    assert await found(db, "lovelace") == ["author"]


async def test_filters_combine_with_the_search(db: Database, tmp_path: Path) -> None:
    await store(
        db,
        tmp_path,
        [
            post("old", "Release notes", "", published_at="2026-01-01T00:00:00.000Z"),
            post("new", "Release notes", "", published_at="2026-11-20T00:00:00.000Z"),
        ],
        feeds=2,
    )
    await PostRepo(db).upsert_many(2, None, [post("other", "Release notes", "")])
    assert sorted(await found(db, "release")) == ["new", "old", "other"]
    assert sorted(await found(db, "release", source_id=1)) == ["new", "old"]
    assert await found(db, "release", source_id=1, since="2026-11-01T00:00:00.000Z") == ["new"]
    assert len(await found(db, "release", limit=2)) == 2


async def test_a_query_matching_more_than_the_window_ranks_its_newest_matches(
    db: Database, tmp_path: Path
) -> None:
    """The best match is the oldest post: inside the window it wins, outside it is left
    out and the result says how many of the newest were ranked, on both backends alike."""
    best = post("best", "Kernel kernel kernel", "<p>kernel kernel</p>")
    rest = [post(f"p{i}", f"note {i}", "<p>one kernel mention among words</p>") for i in range(6)]
    await store(db, tmp_path, [best, *rest])
    wanted = PostFilter(limit=2)
    everything = await search_posts(db, parse("kernel"), wanted, window=10)
    assert everything.ranked_newest is None
    assert everything.hits[0].post.external_id == "best"
    newest = await search_posts(db, parse("kernel"), wanted, window=4)
    assert newest.ranked_newest == 4
    assert "best" not in [hit.post.external_id for hit in newest.hits]
    # Exactly as many matches as the window: nothing was left out.
    exact = await search_posts(db, parse("kernel"), wanted, window=7)
    assert (exact.ranked_newest, exact.hits[0].post.external_id) == (None, "best")
    # The window counts the matches the filters keep; no limit ranks every match.
    one_feed = await search_posts(db, parse("kernel"), PostFilter(source_id=1, limit=2), 4)
    assert one_feed.ranked_newest == 4
    unlimited = await search_posts(db, parse("kernel"), PostFilter(), window=4)
    assert unlimited.ranked_newest is None
    assert len(unlimited.hits) == 7 and unlimited.hits[0].post.external_id == "best"
    # A --limit beyond the window widens it.
    wide = await search_posts(db, parse("kernel"), PostFilter(limit=7), window=4)
    assert (wide.ranked_newest, len(wide.hits)) == (None, 7)


@pytest.mark.parametrize(
    ("matches", "posts", "window", "walk"),
    [
        (100_000, 500_000, 1000, True),  # a word in 20%: 5,000 posts walked, not 100,000
        (10_000, 500_000, 1000, False),  # in 2%: 50,000 walked, the index reads 10,000
        (31_000, 500_000, 1000, False),  # just below the crossing
        (32_000, 500_000, 1000, True),  # just above
        (5, 500_000, 1000, False),  # a rare word
        (900, 1_000, 1000, False),  # fewer posts than the window: the index, all of them
        (0, 0, 1000, False),  # an empty table
    ],
)
def test_where_postgresql_walks_the_newest_posts(
    matches: float, posts: float, window: int, walk: bool
) -> None:
    assert walks_newest(matches, posts, window) is walk


async def test_both_ways_to_the_newest_matches_find_the_same(db: Database, tmp_path: Path) -> None:
    if db.dialect.search_table:
        pytest.skip("SQLite's FTS5 gives its matches newest first: there is no choice to make")
    many = [post(f"p{i}", f"Note {i}", f"<p>kernel {'kernel ' * (i % 5)}</p>") for i in range(30)]
    await store(db, tmp_path, many)
    first: list[int] = []
    for wanted in [PostFilter(limit=5), PostFilter(source_id=1)]:
        results = []
        for walk in (True, False):
            sql, params = search_query(db.dialect, parse("kernel"), wanted, window=10, walk=walk)
            results.append([(row["id"], row["rank"]) for row in await db.fetchall(sql, params)])
        assert results[0] == results[1] and results[0]
        first = first or [row_id for row_id, _ in results[0]]
    # What search_posts decides from the planner's estimate gives the same again.
    found = await search_posts(db, parse("kernel"), PostFilter(limit=5), window=10)
    assert [hit.post.id for hit in found.hits] == first


@pytest.mark.parametrize(
    "text",
    [
        '"',
        'a"b',
        '"unclosed',
        "a AND b OR NOT c",
        "NEAR(a b, 2)",
        "title:x",
        "^a",
        "a*",
        "'; DROP TABLE posts; --",
        "x\x00y",
        "\x00",
        "(a | b) & !c <-> d",
        "a:* & b",
        "\u202e\x1b[31m",
        "ab" * 5_000,
    ],
)
async def test_hostile_queries_are_words_or_a_clear_refusal(
    db: Database, tmp_path: Path, text: str
) -> None:
    await store(db, tmp_path, [post("p", "a b c d x y title", "")])
    try:
        query = parse(text)
    except QueryError:
        return
    await search_posts(db, query, PostFilter())  # no syntax error, whatever it finds
    assert await found(db, "title") == ["p"], "and the table is still there"


async def test_an_edited_post_is_found_by_its_new_words_only(db: Database, tmp_path: Path) -> None:
    await store(db, tmp_path, [post("p", "Original title", "<p>first wording</p>")])
    assert await found(db, "first") == ["p"]
    counts = await PostRepo(db).upsert_many(
        1, None, [post("p", "Edited title", "<p>second wording</p>")]
    )
    assert counts.updated == 1
    assert await found(db, "first") == []
    assert await found(db, "original") == []
    assert await found(db, "second edited") == ["p"]
    await assert_index_sound(db)


async def test_retention_removes_posts_from_the_index(db: Database, tmp_path: Path) -> None:
    await store(db, tmp_path, [post("p", "Ephemeral news", "")])
    assert await found(db, "ephemeral") == ["p"]
    removed = await PostRepo(db).prune("2999-01-01T00:00:00.000Z")
    assert removed == 1 + FILLER
    assert await found(db, "ephemeral") == []
    await assert_index_sound(db)
    # A new post may take a freed id: it is found by its own words only.
    await PostRepo(db).upsert_many(1, None, [post("q", "Fresh news", "")])
    assert await found(db, "fresh") == ["q"]
    assert await found(db, "ephemeral") == []
    await assert_index_sound(db)


async def test_deleting_a_feed_by_hand_keeps_the_index_sound(db: Database, tmp_path: Path) -> None:
    """Posts deleted outside rssd's repositories (a cascade from a feed deleted by hand):
    the triggers queue them, the next write applies the queue."""
    await store(db, tmp_path, [post("p", "Cascade victim", "")], feeds=2)
    await db.write(lambda tx: tx.execute("DELETE FROM content_sources WHERE id = 1"))
    assert await found(db, "victim") == []
    await PostRepo(db).upsert_many(2, None, [post("q", "Survivor", "")])
    assert await found(db, "survivor") == ["q"]
    await assert_index_sound(db)


async def test_a_post_deleted_by_hand_then_its_id_taken(db: Database, tmp_path: Path) -> None:
    """The newest post deleted outside rssd (queued, not yet applied), then a new post that
    takes its id on SQLite: only the new text is found, the index stays sound."""
    await store(db, tmp_path, [])
    await PostRepo(db).upsert_many(1, None, [post("p", "Doomed headline", "<p>gone</p>")])
    await db.write(lambda tx: tx.execute("DELETE FROM posts WHERE external_id = 'p'"))
    await PostRepo(db).upsert_many(1, None, [post("q", "Heir headline", "<p>here</p>")])
    assert await found(db, "headline") == ["q"]
    assert await found(db, "doomed") == []
    await assert_index_sound(db)


async def test_a_post_inserted_by_hand_is_indexed_by_the_next_write(
    db: Database, tmp_path: Path
) -> None:
    """rssd indexes its own inserts itself; one made by anyone else is still queued (SQLite)
    and indexed by the next write, on both backends found the same way."""
    await store(db, tmp_path, [post("p", "Fetched story", "")])

    async def by_hand(tx: Any) -> None:
        search = tx.dialect.post_search
        await tx.execute(
            "INSERT INTO posts (content_source_id, external_id, title, created_at, "
            f"content_hash{', search' if search else ''}) VALUES (1, 'h', 'Handmade story', "
            f"'2026-11-01T00:00:00.000Z', 'h'{', ' + search if search else ''})",
            {"s_title": "handmade story", "s_body": "", "s_author": ""},
        )

    await db.write(by_hand)
    await PostRepo(db).upsert_many(1, None, [post("q", "Another story", "")])
    assert sorted(await found(db, "story")) == ["h", "p", "q"]
    assert await found(db, "handmade") == ["h"]
    await assert_index_sound(db)


async def test_posts_with_and_without_their_worker_text(db: Database, tmp_path: Path) -> None:
    """A post carries the text its parse worker computed (``search_doc``) or none (then it
    is computed when stored): both are found by the same words and removed cleanly."""
    doc = document("Carried title", None, "<p>carried <b>body</b></p>", None)
    carried = replace(post("c", "Carried title", "<p>carried <b>body</b></p>"), search_doc=doc)
    await store(db, tmp_path, [carried, post("b", "Bare title", "<p>bare body</p>")])
    assert sorted(await found(db, "title body")) == ["b", "c"]
    assert await found(db, "carried") == ["c"]
    await assert_index_sound(db)
    assert await PostRepo(db).prune("2999-01-01T00:00:00.000Z") == 2 + FILLER
    assert await found(db, "title") == []
    await assert_index_sound(db)


async def forget_index(db: Database) -> None:
    """Make the database look as the migration to version 13 leaves one: posts stored, the
    index empty, every post left to the backfill."""

    async def work(tx: Any) -> None:
        if tx.dialect.name == "sqlite":
            await tx.execute("INSERT INTO posts_fts (posts_fts) VALUES ('delete-all')")
        else:
            await tx.execute("UPDATE posts SET search = NULL")
        await tx.execute(
            "UPDATE search_backfill SET next_id = 1, "
            "last_id = (SELECT coalesce(max(id), 0) FROM posts)"
        )

    await db.write(work)


async def test_the_index_is_built_in_batches_and_resumes(
    db: Database, db_target: Path | str, tmp_path: Path
) -> None:
    await store(db, tmp_path, [post(f"p{i}", f"Backfilled {i}", "") for i in range(5)])
    await forget_index(db)
    state = await db.snapshot(backfill_state)
    assert (state.done, state.total, state.complete) == (0, 5 + FILLER, False)
    assert await found(db, "backfilled") == []
    assert not await db.write(lambda tx: backfill_batch(tx, 3))  # then "interrupted"
    assert len(await found(db, "backfilled")) == 3

    again = await open_database(db_target)  # a later start resumes at the mark
    try:
        # An edit of a post not indexed yet: indexed with its new text, not twice.
        await PostRepo(again).upsert_many(1, None, [post("p4", "Backfilled 4 edited", "")])
        seen: list[tuple[int, int]] = []
        final = await build_index(
            again,
            batch=2,
            pause=0,
            progress=lambda s: seen.append((s.done, s.total)),
            progress_seconds=0,
        )
        assert final.complete
        assert seen and seen[-1] == (0, 0)  # complete: nothing left to count
        assert [d for d, _ in seen[:-1]] == sorted(d for d, _ in seen[:-1])
        assert sorted(await found(again, "backfilled")) == [f"p{i}" for i in range(5)]
        assert await found(again, "edited") == ["p4"]
        await assert_index_sound(again)
    finally:
        await again.close()


async def downgrade_to_12(db_target: Path | str) -> None:
    """A version-12 database with posts: today's schema without the objects of version
    13 and the later ones (14: deliveries.earlier_attempts; 15: the users' sender lease and
    pause; 17: the daemons' database wait; 20: the check that accepted config.toml)."""
    later_columns = (
        ("deliveries", "earlier_attempts"),
        ("users", "sender"),
        ("users", "sender_until"),
        ("users", "paused_until"),
        ("daemons", "database_wait_since"),
        ("config_sync", "checked_by"),
    )
    if isinstance(db_target, Path):
        with closing(sqlite3.connect(db_target)) as conn:
            for table, column in later_columns:
                conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
            for name in ("posts_search_insert", "posts_search_update", "posts_search_delete"):
                conn.execute(f"DROP TRIGGER {name}")
            for table in ("posts_fts", "search_queue", "search_backfill"):
                conn.execute(f"DROP TABLE {table}")
            conn.execute("DROP INDEX deliveries_source")
            conn.execute("PRAGMA user_version = 12")
            conn.commit()
        return
    async with await psycopg.AsyncConnection.connect(db_target, autocommit=True) as conn:
        for table, column in later_columns:
            await conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        await conn.execute("DROP TABLE search_backfill")
        await conn.execute("DROP INDEX deliveries_source")
        await conn.execute("ALTER TABLE posts DROP COLUMN search")
        await conn.execute("UPDATE schema_version SET version = 12")


async def test_a_version_12_database_is_migrated_and_its_posts_indexed(
    db: Database, db_target: Path | str, tmp_path: Path
) -> None:
    await store(db, tmp_path, [post(f"p{i}", f"Migrated {i}", "") for i in range(3)])
    await db.close()
    await downgrade_to_12(db_target)
    migrated = await open_database(db_target)
    try:
        assert await migrated.schema_version() == SCHEMA_VERSION
        state = await migrated.snapshot(backfill_state)
        assert (state.done, state.total) == (0, 3 + FILLER)
        assert await found(migrated, "migrated") == []
        assert (await build_index(migrated, batch=4, pause=0)).complete
        assert sorted(await found(migrated, "migrated")) == ["p0", "p1", "p2"]
        await assert_index_sound(migrated)
    finally:
        await migrated.close()


async def test_the_messages_that_announced_a_post(db: Database, tmp_path: Path) -> None:
    """`rssd deliveries --post`: the messages whose body lists the post, not those of the
    same feed announcing others."""
    await setup(
        db,
        tmp_path,
        [
            user("alice", HOOK, [A], notify_backlog=True),
            user("bob", HOOK, ["*"], notify_backlog=True),
        ],
    )
    await fetch(db, A, [announced(1), announced(2)])
    await fetch(db, A, [announced(3)])
    rows = await db.fetchall("SELECT id, external_id FROM posts ORDER BY id")
    ids = {row["external_id"]: int(row["id"]) for row in rows}
    first = await OutboxRepo(db).announcing(ids["id-2"])
    assert [(d.user_name, d.posts_count) for d in first] == [("alice", 2), ("bob", 2)]
    later = await OutboxRepo(db).announcing(ids["id-3"])
    assert [(d.user_name, d.posts_count) for d in later] == [("alice", 1), ("bob", 1)]
    assert not {d.id for d in first} & {d.id for d in later}
    assert await OutboxRepo(db).announcing(10**9) == []
