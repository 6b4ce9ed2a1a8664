"""``rssd discover URL`` over a loopback server: a page's feeds, a feed itself, nothing."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import FeedServer, rss
from tests.support.commands import cli

PAGE = """<!DOCTYPE html><html><head><title>Blog</title>
<base href="/blog/">
<link rel="alternate" type="application/feed+json" title="JSON" href="feed.json">
<link rel="alternate" type="application/atom+xml" title="Everything (Atom)" href="/atom.xml">
<link rel="alternate" type="application/rss+xml" title="Posts" href="posts.rss">
<link rel="stylesheet" href="style.css">
</head><body>hi</body></html>"""


async def test_a_page_lists_its_feeds_in_preference_order(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    url = feed_server.static("/", PAGE, content_type="text/html")
    base = f"http://127.0.0.1:{feed_server.port}"
    result = await cli("discover", "-c", tmp_path / "none.toml", url)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"{url} is an HTML page offering 3 feeds (rssd would use the first):"
    rows = [[cell.strip() for cell in line.split("  ") if cell.strip()] for line in lines[1:]]
    assert rows == [
        ["TYPE", "TITLE", "URL"],
        ["RSS", "Posts", f"{base}/blog/posts.rss"],
        ["Atom", "Everything (Atom)", f"{base}/atom.xml"],
        ["JSON Feed", "JSON", f"{base}/blog/feed.json"],
    ]


async def test_a_feed_is_a_feed_itself(feed_server: FeedServer, tmp_path: Path) -> None:
    url = feed_server.static("/feed", rss([{"guid": "urn:1", "title": "t"}], title="Mine"))
    result = await cli("discover", "-c", tmp_path / "none.toml", url)
    assert (result.code, result.out.strip()) == (0, f'{url} is a feed itself: RSS "Mine", 1 posts')


async def test_a_feeds_title_cannot_drive_the_terminal(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """A bidi override (U+202E) in the publisher's title is shown escaped."""
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Safe\u202eenil",
        "items": [{"id": "1", "content_text": "x"}],
    }
    url = feed_server.static("/feed.json", json.dumps(feed), content_type="application/feed+json")
    result = await cli("discover", "-c", tmp_path / "none.toml", url)
    assert (result.code, result.out.strip()) == (
        0,
        f'{url} is a feed itself: JSON Feed "Safe\\u202eenil", 1 posts',
    )
    assert "\u202e" not in result.out


async def test_a_page_without_feeds_exits_1(feed_server: FeedServer, tmp_path: Path) -> None:
    url = feed_server.static(
        "/", "<html><head></head><body>x</body></html>", content_type="text/html"
    )
    result = await cli("discover", "-c", tmp_path / "none.toml", url)
    assert result.code == 1
    assert result.out == ""
    assert result.err.strip() == (
        f"rssd discover: {url}: not_a_feed: an HTML page, not a feed, and it links to no feed "
        '(<link rel="alternate">)'
    )


async def test_a_failed_fetch_exits_1_without_the_password(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    feed_server.static("/private", "no", status=401, content_type="text/plain")
    url = f"http://alice:s3cret@127.0.0.1:{feed_server.port}/private"
    result = await cli("discover", "-c", tmp_path / "none.toml", url)
    assert result.code == 1
    assert "s3cret" not in result.out + result.err
    assert "alice:***@" in result.err
    assert "http_error" in result.err


async def test_a_bad_url_is_a_usage_error(tmp_path: Path) -> None:
    result = await cli("discover", "-c", tmp_path / "none.toml", "ftp://x.example/")
    assert result.code == 2
    assert "http:// or https://" in result.err
