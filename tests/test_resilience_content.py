"""Hostile content: not feeds, garbage, entity attacks, broken encodings, odd characters,
identity and date games. Every document goes through the real pipeline (download, parse in
the worker pool, store) in one run beside good feeds."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from tests.conftest import FeedServer, Handler
from tests.support.resilience import RunResult, good_feed, run_feeds

XML = '<?xml version="1.0" encoding="utf-8"?>'
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def channel(items: str, *, declaration: str = XML, doctype: str = "") -> str:
    return (
        f'{declaration}{doctype}<rss version="2.0"><channel><title>t</title>'
        f"<link>http://example.org/</link>{items}</channel></rss>"
    )


def item(guid: str | None = None, **fields: str) -> str:
    inner = "".join(f"<{name}>{value}</{name}>" for name, value in fields.items())
    return f"<item>{inner}{f'<guid>{guid}</guid>' if guid else ''}</item>"


OK_ITEM = item("urn:ok", title="ok")


def laughs(root: str) -> str:
    """Billion laughs: 10 levels of 10 references, 10^9 'lol's if expanded."""
    entities = '<!ENTITY lol "lol"><!ENTITY lol1 "' + "&lol;" * 10 + '">'
    entities += "".join(f'<!ENTITY lol{i} "' + f"&lol{i - 1};" * 10 + '">' for i in range(2, 10))
    return f'<?xml version="1.0"?><!DOCTYPE {root} [{entities}]>'


def xxe(target: str, *, parameter: bool = False) -> str:
    if parameter:
        return f'<!DOCTYPE rss [<!ENTITY % ext SYSTEM "{target}"> %ext;]>'
    return f'<!DOCTYPE rss [<!ENTITY ext SYSTEM "{target}">]>'


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def content_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[RunResult, dict[str, str]]:
    """One run over every document below (and a good feed), shared by this module's tests."""
    s = FeedServer()
    await s.start()
    try:
        return await _content_run(s, tmp_path_factory.mktemp("content"))
    finally:
        await s.stop()


async def _content_run(s: FeedServer, tmp_path: Path) -> tuple[RunResult, dict[str, str]]:
    xxe_url = s.url("/xxe-target")
    s.static("/xxe-target", "<title>SSRF</title>", content_type="text/plain")
    atom_laughs = (
        laughs("feed") + '<feed xmlns="http://www.w3.org/2005/Atom"><title>&lol9;</title>'
        "<entry><id>urn:lol</id><title>&lol9;</title></entry>"
        "<entry><id>urn:ok</id><title>ok</title></entry></feed>"
    )
    big = "a" * 50_000
    latin1 = channel(item("urn:cafe", title="café naïve") + OK_ITEM).encode("latin-1")
    invalid_utf8 = channel(item("urn:bad", title="bad XX byte") + OK_ITEM).encode()
    invalid_utf8 = invalid_utf8.replace(b"XX", b"\xff\xfe\xc3(\xed\xa0\x80")
    documents: dict[str, tuple[bytes | str, str]] = {
        "html": (
            "<!doctype html><html><head><title>Blog</title></head><body><p>hi</p></body></html>",
            "text/html",
        ),
        "html linking a feed": (
            '<!doctype html><html><head><link rel="alternate" type="application/rss+xml" '
            'href="/no-such-feed.xml"></head><body>hi</body></html>',
            "text/html; charset=utf-8",
        ),
        "random bytes": (random.Random(6).randbytes(65536), "application/rss+xml"),
        "billion laughs (RSS)": (
            channel(item("urn:lol", title="&lol9;") + OK_ITEM, declaration=laughs("rss")),
            "application/rss+xml",
        ),
        "billion laughs (Atom)": (atom_laughs, "application/atom+xml"),
        "quadratic blowup": (
            channel(
                item("urn:q", title="q", description="&big;" * 50_000) + OK_ITEM,
                doctype=f'<!DOCTYPE rss [<!ENTITY big "{big}">]>',
            ),
            "application/rss+xml",
        ),
        "external entity file:": (
            channel(
                item("urn:x", title="&ext;", description="&ext;") + OK_ITEM,
                doctype=xxe("file:///etc/passwd"),
            ),
            "application/rss+xml",
        ),
        "external parameter entity file:": (
            channel(
                item("urn:x", title="x") + OK_ITEM,
                doctype=xxe("file:///etc/passwd", parameter=True),
            ),
            "application/rss+xml",
        ),
        "external entity http:": (
            channel(item("urn:x", title="&ext;") + OK_ITEM, doctype=xxe(xxe_url)),
            "application/rss+xml",
        ),
        "declared utf-8, is latin-1": (latin1, "application/rss+xml"),
        "header says latin-1, document utf-8": (
            channel(item("urn:cafe", title="café") + OK_ITEM).encode(),
            "application/rss+xml; charset=iso-8859-1",
        ),
        "invalid utf-8": (invalid_utf8, "application/rss+xml"),
        "NUL and control characters": (
            channel(
                item("urn:ctl\x00", title="a\x00b\x01c\x1bd\x7fe", description="x\x0cy\x9fz")
                + OK_ITEM
            ),
            "application/rss+xml",
        ),
        "&#xD800;": (
            channel(item("urn:s", title="half &#xD800; a pair") + OK_ITEM),
            "application/rss+xml",
        ),
        "&#x110000;": (
            channel(item("urn:s", title="beyond &#x110000;") + OK_ITEM),
            "application/rss+xml",
        ),
        "deeply nested markup": (
            channel(
                item(
                    "urn:deep",
                    title="deep",
                    description="<![CDATA[" + "<div>" * 50_000 + "x" + "</div>" * 50_000 + "]]>",
                )
                + OK_ITEM
            ),
            "application/rss+xml",
        ),
        "missing and duplicate guids": (
            channel(
                item(title="by link", link="http://example.org/by-link")
                + item(title="no id", description="only content")
                + item("urn:dup", title="first")
                + item("urn:dup", title="second")
                + item(title="no id", description="only content")
            ),
            "application/rss+xml",
        ),
        "dates": (
            channel(
                item("urn:nozone", title="a", pubDate="2024-03-01T10:00:00")
                + item("urn:rfc-nozone", title="b", pubDate="Fri, 01 Mar 2024 10:00:00")
                + item("urn:offset", title="c", pubDate="Fri, 01 Mar 2024 10:00:00 +0530")
                + item("urn:future", title="d", pubDate="Fri, 31 Dec 9999 12:00:00 GMT")
                + item("urn:past-max", title="e", pubDate="Fri, 31 Dec 9999 23:00:00 -0500")
                + item("urn:garbage", title="f", pubDate="the day after tomorrow")
                + item("urn:zero", title="g", pubDate="0000-00-00T00:00:00Z")
            ),
            "application/rss+xml",
        ),
    }
    urls: dict[str, str] = {}
    for index, (case, (body, content_type)) in enumerate(documents.items()):
        data = body.encode() if isinstance(body, str) else body
        urls[case] = s.route(f"/doc{index}", _serve(data, content_type))
    urls["good"] = good_feed(s)
    result = await run_feeds(tmp_path, list(urls.values()), max_per_host=50)
    assert s.hits.get("/xxe-target", 0) == 0, "an external entity was fetched (SSRF)"
    return result, urls


def _serve(data: bytes, content_type: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=data, headers={"Content-Type": content_type})

    return handler


def _posts(result: RunResult, url: str) -> dict[str, dict[str, str | None]]:
    return {
        post.external_id: {
            "title": post.title,
            "summary": post.summary,
            "published_at": post.published_at,
            "url": post.url,
        }
        for post in result.posts.get(url, [])
    }


def test_not_feeds(content_run: tuple[RunResult, dict[str, str]]) -> None:
    result, urls = content_run
    job = result.assert_failed(urls["html"], "not_a_feed")
    assert job.error_message == (
        'an HTML page, not a feed, and it links to no feed (<link rel="alternate">)'
    )
    # The page's feed is fetched (tests/test_discover.py); here it fails, and says which.
    job = result.assert_failed(urls["html linking a feed"], "http_error", http_status=404)
    assert (job.error_message or "").startswith("HTTP 404 Not Found (at http://127.0.0.1:")
    assert "/no-such-feed.xml, the feed the page http://127.0.0.1:" in (job.error_message or "")
    result.assert_failed(urls["random bytes"], "not_a_feed")
    result.assert_good(urls["good"])


@pytest.mark.parametrize(
    "case", ["billion laughs (RSS)", "billion laughs (Atom)", "quadratic blowup"]
)
def test_entity_expansion_is_never_performed(
    content_run: tuple[RunResult, dict[str, str]], case: str
) -> None:
    """expat refuses the amplification; feedparser's lenient fallback leaves the references
    unexpanded. The posts are stored, no field anywhere near the expansion's size."""
    result, urls = content_run
    result.assert_completed(urls[case], 2)
    for post in result.posts[urls[case]]:
        assert "lollollol" not in (post.title or "")
        assert "a" * 60_000 not in (post.summary or "")  # one expansion is 50,000
        assert all(len(text) < 500_000 for text in post.texts()), post.external_id
    result.assert_good(urls["good"])


@pytest.mark.parametrize(
    "case", ["external entity file:", "external parameter entity file:", "external entity http:"]
)
def test_external_entities_are_never_resolved(
    content_run: tuple[RunResult, dict[str, str]], case: str
) -> None:
    result, urls = content_run
    passwd = Path("/etc/passwd").read_text()
    first_line = passwd.splitlines()[0]
    for posts in result.posts.values():
        for post in posts:
            for text in post.texts():
                assert first_line not in text and "root:x:0:0" not in text, post
                assert "SSRF" not in text, post
    assert len(result.posts[urls[case]]) == 2  # stored, the entity left alone
    result.assert_good(urls["good"])


def test_wrong_charsets_and_invalid_utf8_are_stored_readable(
    content_run: tuple[RunResult, dict[str, str]],
) -> None:
    result, urls = content_run
    assert _posts(result, urls["declared utf-8, is latin-1"])["urn:cafe"]["title"] == "café naïve"
    assert _posts(result, urls["header says latin-1, document utf-8"])["urn:cafe"]["title"]
    bad = _posts(result, urls["invalid utf-8"])
    assert set(bad) == {"urn:bad", "urn:ok"}
    assert (bad["urn:bad"]["title"] or "").startswith("bad ")
    result.assert_good(urls["good"])


def test_control_characters_are_stripped(content_run: tuple[RunResult, dict[str, str]]) -> None:
    result, urls = content_run
    for posts in result.posts.values():
        for post in posts:
            for text in post.texts():
                assert not CONTROL.search(text), (post.external_id, text[:80])
    stored = _posts(result, urls["NUL and control characters"])
    assert "urn:ok" in stored
    assert [p["title"] for p in stored.values() if p["title"] != "ok"] == ["abcde"]
    result.assert_good(urls["good"])


@pytest.mark.parametrize("case", ["&#xD800;", "&#x110000;"])
def test_character_references_feedparser_raises_on(
    content_run: tuple[RunResult, dict[str, str]], case: str
) -> None:
    """feedparser raises on these; rssd repairs them to U+FFFD first: every post stored."""
    result, urls = content_run
    posts = _posts(result, urls[case])
    assert {"urn:s", "urn:ok"} <= set(posts), result.job(urls[case])
    result.assert_good(urls["good"])


def test_deeply_nested_markup_is_stored_or_refused_cleanly(
    content_run: tuple[RunResult, dict[str, str]],
) -> None:
    result, urls = content_run
    job = result.job(urls["deeply nested markup"])
    if job.status == "FAILED":
        assert job.error_code == "parse_error", job
    else:
        assert "urn:ok" in _posts(result, urls["deeply nested markup"])
    result.assert_good(urls["good"])


def test_missing_and_duplicate_guids(content_run: tuple[RunResult, dict[str, str]]) -> None:
    """No guid: the link; neither: a hash of the content (the same content twice is one
    post); a guid twice in one document: the first wins."""
    result, urls = content_run
    posts = _posts(result, urls["missing and duplicate guids"])
    assert len(posts) == 3
    assert posts["http://example.org/by-link"]["title"] == "by link"
    assert posts["urn:dup"]["title"] == "first"
    [hashed] = [key for key in posts if key.startswith("sha256:")]
    assert posts[hashed]["summary"] == "only content"
    result.assert_good(urls["good"])


def test_dates_without_zone_far_future_and_unparseable(
    content_run: tuple[RunResult, dict[str, str]],
) -> None:
    result, urls = content_run
    dates = {key: post["published_at"] for key, post in _posts(result, urls["dates"]).items()}
    assert dates == {
        "urn:nozone": "2024-03-01T10:00:00.000Z",  # no zone: UTC (README)
        "urn:rfc-nozone": "2024-03-01T10:00:00.000Z",
        "urn:offset": "2024-03-01T04:30:00.000Z",
        "urn:future": "9999-12-31T12:00:00.000Z",  # stored as published
        "urn:past-max": None,  # beyond year 9999 in UTC: unreadable -> NULL
        "urn:garbage": None,
        "urn:zero": None,
    }
    result.assert_good(urls["good"])


async def test_an_emoji_written_as_a_surrogate_pair_loses_no_other_post(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    url = feed_server.static(
        "/emoji",
        channel(
            item("urn:smile", title="smile &#xD83D;&#xDE00;") + OK_ITEM + item("urn:2", title="two")
        ),
    )
    good = good_feed(feed_server)
    result = await run_feeds(tmp_path, [url, good])
    result.assert_good(good)
    posts = _posts(result, url)
    assert {"urn:ok", "urn:2"} <= set(posts), result.job(url)
