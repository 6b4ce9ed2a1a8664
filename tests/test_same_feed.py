"""A page and the feed it links to, both in config.toml: one feed (rssd/models/same_feed.py),
told once and stored once."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from rssd.models.dto import Source
from rssd.models.same_feed import FeedIndex, pages_leading_to, same_feeds
from tests.conftest import FeedServer, rss
from tests.support.commands import cli
from tests.support.config import write_config
from tests.test_daemon_output import every_line_json, rssd

NOW = "2026-12-01T00:00:00.000Z"


def source(
    source_id: int, url: str, feed_url: str | None = None, *, enabled: bool = True
) -> Source:
    return Source(
        id=source_id,
        url=url,
        name=None,
        interval_minutes=60,
        timeout_seconds=30.0,
        enabled=enabled,
        created_at=NOW,
        updated_at=NOW,
        feed_url=feed_url,
    )


def told_twice(out: str, err: str) -> list[tuple[int, int]]:
    """(page, feed) of each ``source.duplicate`` a run logged."""
    told = [e for e in every_line_json(out, err) if e["message"] == "source.duplicate"]
    return [(e["source_id"], e["feed_source_id"]) for e in told]


def posts_per_source(database: Path) -> list[tuple[int, int]]:
    with closing(sqlite3.connect(database)) as conn:
        return conn.execute(
            "SELECT content_source_id, count(*) FROM posts GROUP BY content_source_id"
        ).fetchall()


PAGE = "https://jane.example/blog/"
FEED = "https://jane.example/blog/feed.xml"


@pytest.mark.parametrize(
    ("sources", "pairs"),
    [
        ([source(1, PAGE, FEED), source(2, FEED)], [(1, 2)]),
        ([source(1, PAGE, FEED.upper().replace("HTTPS", "https")), source(2, FEED)], []),
        ([source(1, PAGE, "HTTPS://JANE.EXAMPLE/blog/feed.xml"), source(2, FEED)], [(1, 2)]),
        ([source(1, PAGE, FEED), source(2, FEED, enabled=False)], []),
        ([source(1, PAGE, FEED, enabled=False), source(2, FEED)], []),
        ([source(1, PAGE, FEED)], []),
        ([source(1, PAGE), source(2, FEED)], []),  # not discovered (yet)
    ],
)
def test_same_feeds(sources: list[Source], pairs: list[tuple[int, int]]) -> None:
    assert [(s.page.id, s.feed.id) for s in same_feeds(sources)] == pairs


OTHER_PAGE = "https://joe.example/"
OTHER_FEED = "https://joe.example/atom.xml"


@pytest.mark.parametrize(
    ("page", "sources", "feed_id"),
    [
        (source(1, PAGE, FEED), [source(2, FEED)], 2),
        # another pair elsewhere in config.toml is not this page's
        (source(3, OTHER_PAGE, OTHER_FEED), [source(1, PAGE, FEED), source(2, FEED)], None),
        (source(1, PAGE, PAGE), [], None),  # the page answered a feed itself
        (source(1, PAGE, FEED), [source(2, FEED, enabled=False)], None),
        (source(1, PAGE), [source(2, FEED)], None),
    ],
)
def test_the_index_pairs_a_page_with_its_own_feed_only(
    page: Source, sources: list[Source], feed_id: int | None
) -> None:
    pair = FeedIndex.of([page, *sources]).pair(page)
    assert (pair.feed.id if pair else None) == feed_id


@pytest.mark.parametrize(
    ("pages", "ids"),
    [
        ([(1, FEED), (3, "https://jane.example/other.xml")], [1]),
        ([(4, "HTTPS://JANE.EXAMPLE/blog/feed.xml"), (2, FEED)], [2, 4]),
        ([(1, FEED.replace("feed.xml", "FEED.xml"))], []),  # the path is case-sensitive
        ([], []),
    ],
)
def test_pages_leading_to(pages: list[tuple[int, str]], ids: list[int]) -> None:
    """The pages whose users the feed's posts reach, found as same_feeds finds them."""
    assert pages_leading_to(FEED, pages) == ids


async def test_a_page_and_its_feed_both_configured_are_told_once_and_stored_once(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    items = [{"title": f"t{n}", "guid": f"g{n}", "link": f"http://e.org/{n}"} for n in range(3)]
    feed = feed_server.static("/blog/feed.xml", rss(items))
    page = feed_server.static(
        "/blog/",
        '<html><head><link rel="alternate" type="application/rss+xml" href="feed.xml">'
        "</head></html>",
        content_type="text/html",
    )
    config = write_config(tmp_path / "config.toml", [page, feed])
    for _ in range(2):  # the second run: the page's feed is known from the start
        code, out, err = await rssd("run", "--once", "-c", config)
        assert code == 0, err
        assert told_twice(out, err) == [(1, 2)]
    stored = posts_per_source(tmp_path / "rssd.sqlite3")
    assert stored == [(2, 3)], "the posts are stored once, under the feed's own entry"

    checked = await cli("check-config", "-c", config)
    assert checked.code == 0
    assert checked.err.count("configured twice: 1 ") == 1, checked.err
    status = await cli("status", "-c", config)
    assert sum(line.startswith("configured twice: 1 ") for line in status.out.splitlines()) == 1
    document = (await cli("status", "-c", config, "--json")).json()
    assert document["configured_twice"] == [{"page_id": 1, "feed_id": 2}]


async def test_a_page_beside_a_pair_configured_twice_keeps_its_own_posts(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """A page whose feed is configured nowhere else stores its posts, whatever other page
    of config.toml is configured twice (each page used to be judged by every pair)."""

    def items(prefix: str, count: int) -> list[dict[str, str]]:
        return [
            {"title": f"{prefix}{n}", "guid": f"{prefix}{n}", "link": f"http://e.org/{prefix}{n}"}
            for n in range(count)
        ]

    def page_of(path: str, feed: str) -> str:
        return feed_server.static(
            path,
            f'<html><head><link rel="alternate" type="application/rss+xml" href="{feed}">'
            "</head></html>",
            content_type="text/html",
        )

    feed = feed_server.static("/blog/feed.xml", rss(items("b", 2)))
    config = write_config(
        tmp_path / "config.toml",
        [page_of("/blog/", "feed.xml"), feed, page_of("/news/", "news.xml")],
    )
    feed_server.static("/news/news.xml", rss(items("n", 2)))
    code, out, err = await rssd("run", "--once", "-c", config)
    assert code == 0, err
    feed_server.static("/news/news.xml", rss(items("n", 5)))  # 3 new posts
    code, out, err = await rssd("run", "--once", "-c", config)  # every page's feed known
    assert code == 0, err
    assert told_twice(out, err) == [(1, 2)]
    assert posts_per_source(tmp_path / "rssd.sqlite3") == [(2, 2), (3, 5)]
