"""``rssd posts --search`` and ``rssd deliveries --post`` as an operator runs them: "did we
get the post about X, and who was told?"."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from rssd.models.dto import PostCreate
from rssd.repo.open import open_database
from rssd.repo.posts import PostRepo
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer, rss
from tests.support.commands import cli, run_once_from
from tests.support.config import make_config, write_config
from tests.support.webhooks import Receiver
from tests.test_cmd_webhooks import write

FEEDS = ["http://a.example/feed", "http://b.example/feed"]


async def world(tmp_path: Path, posts: list[PostCreate]) -> Path:
    """config.toml with two feeds, its database holding ``posts`` of the first."""
    db = await open_database(tmp_path / "rssd.sqlite3")
    try:
        await SourceRepo(db).sync(make_config(tmp_path, FEEDS))
        await PostRepo(db).upsert_many(1, None, posts)
    finally:
        await db.close()
    return write_config(tmp_path / "config.toml", FEEDS)


def post(key: str, title: str, content: str) -> PostCreate:
    return PostCreate(
        external_id=key,
        title=title,
        url=f"http://a.example/{key}",
        content=content,
        published_at="2026-11-01T00:00:00.000Z",
        content_hash=key,
    )


async def test_text_output_has_a_marked_terminal_safe_snippet(tmp_path: Path) -> None:
    config = await world(
        tmp_path,
        [
            post("p1", "Event loops", "<p>Long intro. " + "filler " * 30 + "Then asyncio.</p>"),
            post("evil", "Other", "<p>asyncio \x1b]52;c;cGF3bmVk\x07 \u202egnp.exe</p>"),
            post("p3", "Unrelated", "<p>gardening</p>"),
        ],
    )
    result = await cli("posts", "-c", config, "--search", "asyncio")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["TIME", "SOURCE", "TITLE"]
    assert "…filler filler" in result.out and "Then *asyncio*." in result.out
    assert "\x1b" not in result.out and "\u202e" not in result.out and "\x07" not in result.out
    assert "\\x1b]52;c;cGF3bmVk\\x07 \\u202egnp.exe" in result.out
    assert "gardening" not in result.out and result.err == ""


async def test_json_lines_carry_rank_and_snippet(tmp_path: Path) -> None:
    config = await world(
        tmp_path,
        [post("t", "Asyncio tips", "<p>tips</p>"), post("b", "Notes", "<p>about asyncio</p>")],
    )
    result = await cli("posts", "-c", config, "--search", "asyncio", "--json")
    assert result.code == 0, result.err
    hits = result.json_lines()
    assert [h["external_id"] for h in hits] == ["t", "b"]  # the title weighs more
    assert hits[0]["rank"] <= hits[1]["rank"]
    assert hits[1]["snippet"] == "about asyncio"
    assert {"id", "title", "url", "source_url", "rank", "snippet"} <= set(hits[0])
    only_b = await cli("posts", "-c", config, "--search", "asyncio -tips", "--json")
    assert [h["external_id"] for h in only_b.json_lines()] == ["b"]
    none = await cli("posts", "-c", config, "--search", "nothing", "--source", FEEDS[1])
    assert (none.code, none.out.strip()) == (0, "no posts match")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--search", '-only "" -excluded'], "--search: nothing to search for"),
        (["--search", "x" * 200], "--search: a word longer than 100 characters"),
        (["--search", "a", "--new"], "--search and --new do not go together"),
    ],
)
async def test_a_query_that_cannot_run_is_a_usage_error(
    tmp_path: Path, args: list[str], message: str
) -> None:
    config = await world(tmp_path, [post("p", "Title", "")])
    result = await cli("posts", "-c", config, *args)
    assert result.code == 2
    assert message in result.err


async def test_while_the_index_is_built_the_search_says_so(tmp_path: Path) -> None:
    config = await world(tmp_path, [post(f"p{i}", f"Story {i}", "") for i in range(4)])
    db = await open_database(tmp_path / "rssd.sqlite3")
    try:
        await db.write_one("UPDATE search_backfill SET next_id = 3, last_id = 4")
    finally:
        await db.close()
    result = await cli("posts", "-c", config, "--search", "story", "--json")
    assert result.code == 0
    assert "search index is still being built by `rssd run`: 50% of the 4 posts" in result.err


# -- who was told ---------------------------------------------------------------------------


async def test_deliveries_of_a_post_found_by_search(
    feed_server: FeedServer, receiver: Receiver, tmp_path: Path
) -> None:
    feed = feed_server.static(
        "/feed",
        rss(
            [
                {"title": "Kernel release", "guid": "k", "description": "<p>linux 7.0</p>"},
                {"title": "Other news", "guid": "o", "description": "<p>weather</p>"},
            ]
        ),
    )

    async def broken(_: web.Request, __: int) -> web.StreamResponse:
        return web.Response(status=500)

    receiver.replies["bob"] = broken
    config = write(
        tmp_path / "config.toml",
        [feed],
        {"alice": (receiver.url("alice"), [feed]), "bob": (receiver.url("bob"), ["*"])},
    )
    assert (await run_once_from(config)).posts_new == 2

    (found,) = (await cli("posts", "-c", config, "--search", "linux", "--json")).json_lines()
    assert found["title"] == "Kernel release"
    told = await cli("deliveries", "-c", config, "--post", str(found["id"]), "--json")
    assert told.code == 0, told.err
    rows = told.json_lines()
    assert [(r["user_name"], r["status"]) for r in rows] == [
        ("alice", "delivered"),
        ("bob", "pending"),
    ]
    human = await cli("deliveries", "-c", config, "--post", str(found["id"]))
    assert human.out.startswith(f"post {found['id']}: Kernel release (")
    assert "alice" in human.out and "delivered" in human.out and "HTTP 500" in human.out
    missing = await cli("deliveries", "-c", config, "--post", "999999")
    assert missing.code == 2 and "no post with id 999999" in missing.err


async def test_a_common_word_says_how_many_of_the_newest_matches_were_ranked(
    tmp_path: Path,
) -> None:
    """More matches than the window: the best of the newest are listed, and stderr says
    so, with how to narrow the search."""
    from rssd.repo.search import RANK_WINDOW  # noqa: PLC0415

    many = [post(f"p{i}", f"Note {i}", "<p>asyncio once</p>") for i in range(RANK_WINDOW + 1)]
    config = await world(tmp_path, many)
    result = await cli("posts", "-c", config, "--search", "asyncio", "--json", "--limit", "3")
    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == 3
    assert f"more than {RANK_WINDOW:,} posts match" in result.err
    assert "--source or --since" in result.err
    few = await cli("posts", "-c", config, "--search", "asyncio", "--limit", "0", "--json")
    assert few.code == 0 and "more than" not in few.err
    assert len(few.out.splitlines()) == RANK_WINDOW + 1
