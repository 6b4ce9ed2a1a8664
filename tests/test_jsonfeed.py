"""JSON Feed (issue #10, item 1): what the golden files do not show. Malformed documents,
wrong labels, bad items; and end to end over a loopback server into a real database:
the Accept header, conditional GET, the unchanged-body skip, an edited item."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web

from rssd.daemon.pipeline import JobReport, Pipeline
from rssd.daemon.startup import daemon_session
from rssd.fetch.digest import content_digest
from rssd.fetch.fetcher import Fetcher, Outcome
from rssd.fetch.jsonfeed import looks_like_json, parse_json_feed
from rssd.fetch.parse import parse_document
from rssd.models.dto import ErrorCode, FetchJobStatus
from rssd.models.search import document
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer
from tests.support.config import make_config

BASE = "http://example.org/feed.json"
V11 = "https://jsonfeed.org/version/1.1"


def feed(items: list[Any], **extra: Any) -> bytes:
    return json.dumps({"version": V11, "title": "J", "items": items, **extra}).encode()


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            b'{"version": "https://jsonfeed.org/version/1.1", "items": [',
            ErrorCode.PARSE_ERROR,
            "malformed JSON Feed: Expecting value at line 1, column 59",
        ),
        (
            b'{"title": "x",, }',
            ErrorCode.NOT_A_FEED,
            "not a feed: not valid JSON (Expecting property name enclosed in double quotes "
            "at line 1, column 15)",
        ),
        (
            b'{"name": "a package.json"}',
            ErrorCode.NOT_A_FEED,
            'JSON, but not a JSON Feed (no "version": "https://jsonfeed.org/version/1.1")',
        ),
        (
            b'{"version": "2.0", "items": []}',
            ErrorCode.NOT_A_FEED,
            'JSON, but not a JSON Feed (no "version": "https://jsonfeed.org/version/1.1")',
        ),
        (
            b"[1, 2, 3]",
            ErrorCode.NOT_A_FEED,
            'JSON, but not a JSON Feed (no "version": "https://jsonfeed.org/version/1.1")',
        ),
    ],
)
def test_malformed_documents_say_what_is_wrong(body: bytes, code: ErrorCode, message: str) -> None:
    outcome = parse_document(body, BASE, "application/json", True, 10.0)
    assert (outcome.error_code, outcome.message) == (code, message)
    assert outcome.posts == ()


@pytest.mark.parametrize(
    ("head", "content_type", "expected"),
    [
        (b"{", None, True),
        (b"\xef\xbb\xbf \n {", "text/html", True),  # BOM and blanks, mislabelled
        (b"[]", "application/feed+json", True),
        (b"[]", "text/plain", False),
        (b"<?xml", "application/json", False),  # an RSS feed labelled JSON is still XML
        (b"<rss>", None, False),
        (b"", "application/json", False),
    ],
)
def test_looks_like_json(head: bytes, content_type: str | None, expected: bool) -> None:
    assert looks_like_json(head, content_type) is expected


@pytest.mark.parametrize("content_type", [None, "text/html", "text/plain", "application/xml"])
def test_mislabelled_json_feed_is_read(content_type: str | None) -> None:
    outcome = parse_document(
        feed([{"id": "1", "content_text": "x"}]), BASE, content_type, True, 10.0
    )
    assert outcome.error_code is None
    assert [post.external_id for post in outcome.posts] == ["1"]


def test_one_bad_item_does_not_lose_the_others() -> None:
    body = feed(
        [
            "a string",
            {
                "id": "good",
                "title": 5,
                "date_published": 17,
                "authors": "nobody",
                "content_html": ["x"],
            },
            None,
        ]
    )
    outcome = parse_document(body, BASE, "application/feed+json", True, 10.0)
    assert outcome.error_code is None
    (post,) = outcome.posts
    assert (post.external_id, post.title, post.published_at, post.author) == (
        "good",
        None,
        None,
        None,
    )
    assert outcome.warning == "item 0 is not an object, skipped; item 2 is not an object, skipped"
    assert post.search_doc == document(post.title, post.summary, post.content, post.author)


def test_a_lone_surrogate_is_replaced_and_every_item_kept() -> None:
    """Issue 20.12: one ``\\ud800`` (valid JSON, no character) failed the whole feed with
    a UnicodeEncodeError; now it becomes U+FFFD wherever it is, and the feed is stored."""
    lone = "\ud800"  # json.dumps writes it as the escape \\ud800, as a hostile feed would
    document = {
        "version": V11,
        "title": f"T{lone}",
        "items": [
            {
                "id": f"a{lone}",
                "title": f"x{lone}y",
                "content_html": "<p>c\udc00</p>",
                "summary": f"s{lone}",
                "url": f"http://e.org/{lone}",
                "tags": [f"t{lone}"],
                "authors": [{"name": f"n{lone}"}],
                "attachments": [{"url": f"http://e.org/{lone}.mp3"}],
                f"_x{lone}": {"deep": [[f"{lone}"]]},
            },
            {"id": "b", "title": "pair \U0001f600, and \\ud800 as text"},
        ],
    }
    body = json.dumps(document).encode()
    assert b"\\ud800" in body and b"\\ud83d\\ude00" in body
    parsed = parse_json_feed(body, BASE, True)
    assert parsed.error_code is None
    first, second = parsed.posts
    assert parsed.title == "T\ufffd"
    assert (first.external_id, first.title, first.summary, first.author, first.content) == (
        "a\ufffd",
        "x\ufffdy",
        "s\ufffd",
        "n\ufffd",
        "<p>c\ufffd</p>",
    )
    assert first.url == "http://e.org/\ufffd"
    assert json.loads(first.tags or "[]") == ["t\ufffd"]
    # Nothing is left in the post that UTF-8 (the database) cannot encode.
    json.dumps(msgspec.to_builtins(first), ensure_ascii=False).encode("utf-8")
    assert second.title == "pair \U0001f600, and \\ud800 as text"  # untouched
    assert parsed.warning == "lone surrogate escapes replaced by U+FFFD"


def test_deeply_nested_json_is_a_parse_error() -> None:
    body = b'{"version": "https://jsonfeed.org/version/1.1", "items": ' + b"[" * 100_000
    body += b"]" * 100_000 + b"}"
    outcome = parse_document(body, BASE, "application/feed+json", True, 10.0)
    assert outcome.error_code is ErrorCode.PARSE_ERROR


def test_html_strings_do_not_confuse_the_body_digest() -> None:
    """The unchanged-body skip hashes a JSON document whole: an edit outside an <item> in
    its HTML strings still counts."""
    one = feed([{"id": "1", "content_html": "<item>x</item>", "title": "before"}])
    two = feed([{"id": "1", "content_html": "<item>x</item>", "title": "after"}])
    assert content_digest(one) != content_digest(two)


async def test_json_feed_end_to_end(feed_server: FeedServer, tmp_path: Path) -> None:
    """Stored like RSS; a 304 and an unchanged body are not parsed; an edit updates."""
    state: dict[str, Any] = {
        "items": [
            {
                "id": "urn:1",
                "title": "One",
                "content_text": "a < b",
                "date_modified": "2026-11-01T10:00:00Z",
            }
        ]
    }
    accepts: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        accepts.append(request.headers.get("Accept", ""))
        body = feed(state["items"])
        etag = f'"{len(body)}-{state["items"][0]["title"]}"'
        if request.headers.get("If-None-Match") == etag and state.get("honour_etag"):
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, content_type="application/feed+json", headers={"ETag": etag})

    url = feed_server.route("/feed.json", serve)
    config = make_config(tmp_path, [url])
    async with asyncio.timeout(60), daemon_session(config) as db:
        (source,) = await SourceRepo(db).list()
        async with Fetcher(config) as fetcher:
            pipeline = Pipeline(db, fetcher)

            async def fetch() -> JobReport:
                report = await pipeline.run(source)
                assert report.status is FetchJobStatus.COMPLETED, report.error_message
                assert report.result is not None
                return report

            first = await fetch()
            assert first.posts_new == 1
            assert first.result is not None and first.result.outcome is Outcome.PARSED
            row = await db.fetchone("SELECT * FROM posts")
            assert row is not None
            assert (row["external_id"], row["title"], row["content"], row["published_at"]) == (
                "urn:1",
                "One",
                "a &lt; b",
                "2026-11-01T10:00:00.000Z",
            )

            again = await fetch()  # same body, no 304: the body digest skips the parse
            assert again.result is not None and again.result.outcome is Outcome.UNCHANGED

            state["honour_etag"] = True
            conditional = await fetch()
            assert conditional.result is not None
            assert conditional.result.outcome is Outcome.NOT_MODIFIED

            state["items"] = [{**state["items"][0], "title": "One, edited"}]
            edited = await fetch()
            assert (edited.posts_new, edited.posts_updated) == (0, 1)
            title = await db.fetchone("SELECT title FROM posts WHERE external_id = 'urn:1'")
            assert title is not None and title["title"] == "One, edited"
    assert accepts and all("application/feed+json" in accept for accept in accepts)
