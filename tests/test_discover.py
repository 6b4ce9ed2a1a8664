"""A homepage URL works (issue #10, item 2): <link rel="alternate"> found, resolved, followed,
recorded; the page asked again only when the feed fails. Pure scans table-driven, then the
real pipeline over a loopback server into a real database, then the daemon itself."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from aiohttp import web

from rssd.daemon.pipeline import JobReport, Pipeline
from rssd.daemon.startup import daemon_session
from rssd.fetch.discover import FeedLink, PageLinks, resolve_links, scan_page
from rssd.fetch.fetcher import Fetcher
from rssd.models.config import Config
from rssd.models.dto import ErrorCode, FetchJobStatus, Source
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer, Handler, rss
from tests.support.commands import cli
from tests.support.config import make_config, write_config
from tests.test_run_once import rows, run_once

PAGE = "http://blog.example/posts/index.html"


def page(head: str) -> str:
    return f"<!DOCTYPE html><html><head><title>Blog</title>{head}</head><body>hi</body></html>"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ('<link rel="alternate" type="application/rss+xml" href="/blog.rss">',
         ["http://blog.example/blog.rss"]),
        ('<link rel="alternate" type="application/rss+xml" href="feed.xml">',
         ["http://blog.example/posts/feed.xml"]),
        ("<link href='https://cdn.example/atom' rel='alternate' type='application/atom+xml'/>",
         ["https://cdn.example/atom"]),
        ('<base href="http://other.example/sub/"><link rel=alternate '
         'type=application/rss+xml href=rss>', ["http://other.example/sub/rss"]),
        ('<base href="/root/"><link rel="alternate" type="application/rss+xml" href="f.xml">',
         ["http://blog.example/root/f.xml"]),
        ('<link rel="alternate" type="application/rss+xml" href="/a?x=1&amp;y=2">',
         ["http://blog.example/a?x=1&y=2"]),
        # Several: RSS, then Atom, then JSON Feed, each in document order.
        ('<link rel="alternate" type="application/feed+json" href="/j">'
         '<link rel="alternate" type="application/atom+xml" href="/a">'
         '<link rel="alternate" type="application/rss+xml" href="/r1">'
         '<link rel="alternate" type="application/rss+xml" href="/r2">',
         ["http://blog.example/r1", "http://blog.example/r2", "http://blog.example/a",
          "http://blog.example/j"]),
        # Not feeds: a stylesheet, WordPress's REST API JSON, a commented-out link, no rel.
        ('<link rel="stylesheet" href="/s.css">'
         '<link rel="alternate" type="application/json" href="/wp-json/wp/v2/pages/2">'
         '<!-- <link rel="alternate" type="application/rss+xml" href="/old.rss"> -->'
         '<link type="application/rss+xml" href="/no-rel">'
         '<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">', []),
        ('<link rel="alternate" type="application/rss+xml" href="/same">'
         '<link rel="alternate" type="application/rss+xml" href="http://blog.example/same">',
         ["http://blog.example/same"]),
        # Control characters (a terminal escape) in an href: no request is made for it.
        ('<link rel="alternate" type="application/rss+xml" href="/\x1b]0;PWNED\x07">'
         '<link rel="alternate" type="application/rss+xml" href="/ok">',
         ["http://blog.example/ok"]),
    ],
)  # fmt: skip
def test_links_are_found_resolved_and_ordered(head: str, expected: list[str]) -> None:
    links = resolve_links(scan_page(page(head).encode()), PAGE)
    assert [link.href for link in links] == expected


def test_titles_and_kinds() -> None:
    head = (
        '<link rel="alternate" type="application/rss+xml" title=" Posts &amp;  more" href="/r">'
        '<link rel="alternate" type="application/feed+json" href="/j">'
    )
    assert scan_page(page(head).encode()) == PageLinks(
        None,
        (
            FeedLink("/r", "application/rss+xml", "Posts & more"),
            FeedLink("/j", "application/feed+json", None),
        ),
    )
    assert [link.kind for link in resolve_links(scan_page(page(head).encode()), PAGE)] == [
        "RSS",
        "JSON Feed",
    ]


FEED = rss([{"guid": "urn:post:1", "title": "One"}, {"guid": "urn:post:2", "title": "Two"}],
           title="The Real Feed")  # fmt: skip


class Site:
    """A page on the loopback server whose links and feeds a test changes as it goes."""

    def __init__(self, server: FeedServer) -> None:
        self.server = server
        self.head = ""
        self.url = server.route("/", self._page)

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=page(self.head), content_type="text/html")

    def hits(self, path: str) -> int:
        return self.server.hits.get(path, 0)


async def fetch_all(config: Config, rounds: int) -> list[JobReport]:
    """``rounds`` fetches of the config's one source through the real pipeline."""
    reports = []
    async with asyncio.timeout(60), daemon_session(config) as db:
        (source,) = await SourceRepo(db).list()
        async with Fetcher(config) as fetcher:
            pipeline = Pipeline(db, fetcher)
            for _ in range(rounds):
                reports.append(await pipeline.run(source))
    return reports


async def stored(config: Config) -> tuple[Source, list[str]]:
    db = await open_database(config.database)
    try:
        (source,) = await SourceRepo(db).list()
        ids = await db.fetchall("SELECT external_id FROM posts ORDER BY external_id")
        return source, [row[0] for row in ids]
    finally:
        await db.close()


@pytest.mark.parametrize(
    "href",
    ["/feeds/main.rss", "feeds/main.rss", "{origin}/feeds/main.rss", "BASE"],
    ids=["root-relative", "relative", "absolute", "base"],
)
async def test_a_homepage_leads_to_its_feed(
    feed_server: FeedServer, tmp_path: Path, href: str
) -> None:
    site = Site(feed_server)
    feed_url = feed_server.static("/feeds/main.rss", FEED)
    if href == "BASE":
        site.head = '<base href="/feeds/"><link rel="alternate" type="application/rss+xml" '
        site.head += 'href="main.rss">'
    else:
        link = href.format(origin=f"http://127.0.0.1:{feed_server.port}")
        site.head = f'<link rel="alternate" type="application/rss+xml" href="{link}">'
    config = make_config(tmp_path, [site.url])
    first, second, third = await fetch_all(config, 3)
    assert first.status is FetchJobStatus.COMPLETED, first.error_message
    assert (first.posts_new, second.posts_new, third.posts_new) == (2, 0, 0)
    source, ids = await stored(config)
    assert source.feed_url == feed_url
    assert source.feed_title == "The Real Feed"
    assert ids == ["urn:post:1", "urn:post:2"]
    # The page was asked once; later fetches went straight to the feed.
    assert (site.hits("/"), site.hits("/feeds/main.rss")) == (1, 3)


async def test_several_feeds_rss_is_preferred(feed_server: FeedServer, tmp_path: Path) -> None:
    site = Site(feed_server)
    feed_server.static("/atom", "<feed/>", content_type="application/atom+xml")
    rss_url = feed_server.static("/rss", FEED)
    site.head = (
        '<link rel="alternate" type="application/atom+xml" href="/atom">'
        '<link rel="alternate" type="application/rss+xml" href="/rss">'
    )
    config = make_config(tmp_path, [site.url])
    (report,) = await fetch_all(config, 1)
    assert report.status is FetchJobStatus.COMPLETED
    assert (await stored(config))[0].feed_url == rss_url
    assert site.hits("/atom") == 0


async def test_a_page_without_feeds_is_not_a_feed(feed_server: FeedServer, tmp_path: Path) -> None:
    site = Site(feed_server)
    site.head = '<link rel="stylesheet" href="/style.css">'
    config = make_config(tmp_path, [site.url])
    (report,) = await fetch_all(config, 1)
    assert report.error_code is ErrorCode.NOT_A_FEED
    assert report.error_message == (
        'an HTML page, not a feed, and it links to no feed (<link rel="alternate">)'
    )
    assert (await stored(config))[0].feed_url is None


async def test_the_page_is_asked_again_when_its_feed_moves(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    site = Site(feed_server)
    old = feed_server.static("/old.rss", FEED)
    site.head = '<link rel="alternate" type="application/rss+xml" href="/old.rss">'
    config = make_config(tmp_path, [site.url])
    (first,) = await fetch_all(config, 1)
    assert first.posts_new == 2
    assert (await stored(config))[0].feed_url == old

    # The old feed now fails and the page links elsewhere: same posts at the new place.
    feed_server.static("/old.rss", "gone", status=404, content_type="text/plain")
    new = feed_server.static("/new.rss", FEED)
    site.head = '<link rel="alternate" type="application/rss+xml" href="/new.rss">'
    moved, after = await fetch_all(config, 2)
    assert moved.status is FetchJobStatus.COMPLETED, moved.error_message
    assert (moved.posts_new, after.posts_new) == (0, 0), "the posts kept their ids"
    source, ids = await stored(config)
    assert source.feed_url == new
    assert ids == ["urn:post:1", "urn:post:2"]
    assert (site.hits("/"), site.hits("/old.rss"), site.hits("/new.rss")) == (2, 2, 2)


async def test_a_failing_feed_the_page_still_links_to_stays_a_failure(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    site = Site(feed_server)
    url = feed_server.static("/feed.rss", FEED)
    site.head = '<link rel="alternate" type="application/rss+xml" href="/feed.rss">'
    config = make_config(tmp_path, [site.url])
    await fetch_all(config, 1)
    feed_server.static("/feed.rss", "down", status=503, content_type="text/plain")
    (failed,) = await fetch_all(config, 1)
    assert (failed.error_code, failed.http_status) == (ErrorCode.HTTP_ERROR, 503)
    assert (await stored(config))[0].feed_url == url
    assert site.hits("/") == 2  # asked again, pointed at the same feed: the failure stands


async def test_a_page_that_becomes_a_feed_is_fetched_as_one(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    site = Site(feed_server)
    feed_server.static("/feed.rss", FEED)
    site.head = '<link rel="alternate" type="application/rss+xml" href="/feed.rss">'
    config = make_config(tmp_path, [site.url])
    await fetch_all(config, 1)
    feed_server.static("/feed.rss", "gone", status=404, content_type="text/plain")
    feed_server.static("/", FEED)  # the configured URL now answers the feed itself
    (report,) = await fetch_all(config, 1)
    assert report.status is FetchJobStatus.COMPLETED
    assert (await stored(config))[0].feed_url is None


async def test_a_page_behind_basic_auth_passes_its_credentials_to_its_own_feed(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()

    def guarded(body: str, content_type: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != expected:
                return web.Response(status=401)
            return web.Response(text=body, content_type=content_type)

        return handler

    feed = rss([{"guid": "s1", "title": "Private"}])  # a relative guid: resolved
    feed_server.route(
        "/private/",
        guarded(
            page('<link rel="alternate" type="application/rss+xml" href="feed.rss">'), "text/html"
        ),
    )
    feed_server.route("/private/feed.rss", guarded(feed, "application/rss+xml"))
    url = f"http://alice:s3cret@127.0.0.1:{feed_server.port}/private/"
    config = make_config(tmp_path, [url])
    (report,) = await fetch_all(config, 1)
    assert report.status is FetchJobStatus.COMPLETED, report.error_message
    source, ids = await stored(config)
    assert source.feed_url == f"http://alice:s3cret@127.0.0.1:{feed_server.port}/private/feed.rss"
    assert ids == [f"http://127.0.0.1:{feed_server.port}/private/s1"]


async def test_the_daemon_logs_the_discovery_once(feed_server: FeedServer, tmp_path: Path) -> None:
    site = Site(feed_server)
    feed_url = feed_server.static("/blog.rss", FEED)
    site.head = '<link rel="alternate" type="application/rss+xml" href="/blog.rss">'
    config = write_config(tmp_path / "config.toml", [site.url])
    first = await run_once(config)
    second = await run_once(config)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    (event,) = first.named("source.discovered")
    assert (event["url"], event["feed_url"]) == (site.url, feed_url)
    assert second.named("source.discovered") == []
    (completed,) = second.named("fetch.completed")
    assert completed["source_name"] == "The Real Feed"  # no name in config.toml
    assert site.hits("/") == 1
    stored_rows = rows(
        tmp_path / "rssd.sqlite3", "SELECT feed_url, feed_title FROM content_sources"
    )
    assert stored_rows == [(feed_url, "The Real Feed")]


async def test_an_imported_page_works_like_a_configured_one(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """import-opml entries that are homepages: the daemon finds their feed the same way."""
    site = Site(feed_server)
    feed_url = feed_server.static("/blog.rss", FEED)
    site.head = '<link rel="alternate" type="application/rss+xml" href="blog.rss">'
    opml = tmp_path / "subs.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head/><body>'
        f'<outline text="Blogs"><outline text="A blog" xmlUrl="{site.url}"/></outline>'
        "</body></opml>"
    )
    config = write_config(tmp_path / "config.toml", [])
    imported = await cli("import-opml", "-c", config, opml)
    assert imported.code == 0, imported.err
    run = await run_once(config)
    assert run.returncode == 0, run.stderr
    (event,) = run.named("source.discovered")
    assert event["feed_url"] == feed_url
    assert rows(
        tmp_path / "rssd.sqlite3", "SELECT name, category, feed_url FROM content_sources"
    ) == [("A blog", "Blogs", feed_url)]
    assert rows(tmp_path / "rssd.sqlite3", "SELECT count(*) FROM posts") == [(2,)]


async def test_the_feeds_title_is_refreshed_when_it_changes(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    document = {"body": rss([{"guid": "urn:1", "title": "one"}], title="Old name")}

    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=document["body"], content_type="application/rss+xml")

    url = feed_server.route("/feed", serve)
    config = make_config(tmp_path, [url])
    await fetch_all(config, 1)
    assert (await stored(config))[0].feed_title == "Old name"
    document["body"] = rss(
        [{"guid": "urn:2", "title": "two"}, {"guid": "urn:1", "title": "one"}],
        title="<![CDATA[New &amp; <em>better</em>]]>",
    )
    await fetch_all(config, 1)
    assert (await stored(config))[0].feed_title == "New & better"
