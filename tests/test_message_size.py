"""Issue 20.6: a publisher cannot turn a small feed into huge webhook bodies.

Before: a 1.8 MB Atom feed (600 relative links per summary under a 2,000-character
``xml:base``) made 100 MB bodies, 55 times the feed: resolving the links multiplied each
summary, and a fetch's posts went out in messages split by count only. Now resolving may
at most double a field (rssd.fetch.sanitize), a post in a message is cut to
``MAX_POST_BYTES`` and a message to ``MAX_MESSAGE_BYTES`` (rssd.models.sizes): the rules
table-driven, then the hostile feed end to end through a real run and a real receiver.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from rssd.fetch.sanitize import GROWTH_ALLOWANCE, GROWTH_FACTOR, clean_html
from rssd.models.outbox import POSTS_PER_MESSAGE, Feed, StoredPost, Subscriber, plan_messages
from rssd.models.post import PostCreate
from rssd.models.sizes import (
    ELLIPSIS,
    MAX_MESSAGE_BYTES,
    MAX_POST_BYTES,
    clip_bytes,
    clip_html,
    fit_post,
    json_size,
    split_by_size,
)
from tests.conftest import FeedServer
from tests.support.commands import run_once_from
from tests.support.webhooks import Receiver
from tests.test_cmd_webhooks import write

FEED = Feed(1, "https://blog.example/feed", "Blog", "Tech")
LONG_BASE = "https://cdn.example/" + "b" * 2000 + "/"


def relative_links(count: int) -> str:
    return "".join(f'<a href="p{i}.html">link {i}</a> ' for i in range(count))


# -- sanitizing ----------------------------------------------------------------------


def test_resolving_relative_links_may_at_most_triple_a_field() -> None:
    hostile = relative_links(600)
    cleaned = clean_html(hostile, LONG_BASE)
    assert len(cleaned) <= GROWTH_FACTOR * len(hostile) + GROWTH_ALLOWANCE
    assert 'href="p599.html"' in cleaned  # left as written: relative
    # An ordinary base still resolves links as before.
    assert clean_html('<a href="p1.html">x</a>', "https://blog.example/a/") == (
        '<a href="https://blog.example/a/p1.html">x</a>'
    )
    assert clean_html(relative_links(1), LONG_BASE).count(LONG_BASE) == 1  # the allowance


# -- the pure rules ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "limit", "expected"),
    [
        ("<p>short</p>", 100, "<p>short</p>"),
        ("<p>abcdef</p>", 9, "<p>abc" + ELLIPSIS),  # the ellipsis is 3 bytes
        ('<p>ab</p><a href="https://x.example/long">', 16, "<p>ab</p>" + ELLIPSIS),
        ("<p>a &amp; b</p>", 11, "<p>a" + ELLIPSIS),
        ("<p>été</p>", 8, "<p>é" + ELLIPSIS),
        ("<p>x</p>", 2, ""),
    ],
)
def test_clip_html_cuts_between_tags(markup: str, limit: int, expected: str) -> None:
    clipped = clip_html(markup, limit)
    assert clipped == expected
    assert len(clipped.encode()) <= limit


def test_clip_bytes_cuts_on_a_character() -> None:
    assert clip_bytes("ééé", 5) == "é" + ELLIPSIS
    assert clip_bytes("abc", 3) == "abc"
    assert clip_bytes("abcd", 2) == ""


def payload(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": 7,
        "external_id": "https://blog.example/p/7",
        "title": "Seven",
        "url": "https://blog.example/p/7",
        "author": "Ann",
        "published_at": "2026-12-04T10:00:00.000Z",
        "summary": "<p>short</p>",
    }
    return base | fields


@pytest.mark.parametrize(
    ("fields", "cut"),
    [
        ({}, set()),
        ({"summary": "<p>" + "x" * 300_000 + "</p>"}, {"summary"}),
        ({"summary": '"\\' * 100_000}, {"summary"}),  # JSON escapes double its size
        ({"content": "<p>" + "c" * 200_000, "summary": "<p>s</p>"}, {"content"}),
        ({"content": "c" * 200_000, "summary": "s" * 200_000}, {"content", "summary"}),
        ({"title": "t" * 300_000}, {"title"}),
        ({"tags": ["t" * 1000] * 200}, {"tags"}),
        ({"url": "https://blog.example/" + "u" * 200_000}, {"url"}),
    ],
)
def test_fit_post_cuts_the_longest_free_text_first(
    fields: dict[str, object], cut: set[str]
) -> None:
    original = payload(**fields)
    fitted = fit_post(original)
    assert json_size(fitted) <= MAX_POST_BYTES
    changed = {key for key in original if fitted[key] != original[key]}
    assert changed == cut
    for key in changed & {"summary", "content", "title"}:
        value = fitted[key]
        assert value is None or (isinstance(value, str) and value.endswith(ELLIPSIS))
    assert fitted["external_id"] == original["external_id"]


@pytest.mark.parametrize(
    ("sizes", "count", "limit", "overhead", "runs"),
    [
        ([10, 10, 10], 100, 1000, 0, [(0, 3)]),
        ([10, 10, 10], 2, 1000, 0, [(0, 2), (2, 3)]),
        ([400, 400, 400], 100, 1000, 100, [(0, 2), (2, 3)]),  # 100 + 400 + 1 + 400
        ([400, 400, 400], 100, 900, 100, [(0, 1), (1, 2), (2, 3)]),
        ([2000, 5, 5], 100, 1000, 0, [(0, 1), (1, 3)]),  # too large for any: alone
        ([], 100, 1000, 0, []),
    ],
)
def test_split_by_size_and_count(
    sizes: list[int], count: int, limit: int, overhead: int, runs: list[tuple[int, int]]
) -> None:
    assert [(r.start, r.stop) for r in split_by_size(sizes, count, limit, overhead)] == runs


def stored(n: int, **fields: str) -> StoredPost:
    values: dict[str, object] = {
        "external_id": f"https://blog.example/p/{n}",
        "title": f"Post {n}",
        "url": f"https://blog.example/p/{n}",
        "content_hash": f"h{n}",
        **fields,
    }
    return StoredPost(n, PostCreate(**values))  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", sorted(POSTS_PER_MESSAGE))
def test_messages_are_split_by_size_as_well_as_count(fmt: str) -> None:
    posts = [stored(n, summary="<p>" + "s" * 500_000 + "</p>") for n in range(40)]
    messages = plan_messages([Subscriber(1, "alice", format=fmt)], FEED, posts, "T")
    assert all(len(m.body.encode()) <= MAX_MESSAGE_BYTES for m in messages)
    assert all(m.posts_count <= POSTS_PER_MESSAGE[fmt] for m in messages)
    ids = [p["id"] for m in messages for p in json.loads(m.body)["data"]["posts"]]
    assert ids == list(range(40))  # every post, once, in order
    for message in messages:
        for post in json.loads(message.body)["data"]["posts"]:
            assert json_size(post) <= MAX_POST_BYTES


def test_a_publishers_huge_title_is_bounded_in_the_envelope() -> None:
    feed = Feed(1, "https://blog.example/feed", "T" * 2_000_000)
    (message,) = plan_messages([Subscriber(1, "alice")], feed, [stored(1)], "T")
    assert len(message.body.encode()) < 4096


# -- end to end ----------------------------------------------------------------------


def hostile_atom(entries: int, links: int) -> bytes:
    items = "".join(
        f'<entry xml:base="{LONG_BASE}"><id>urn:x:{n}</id><title>Entry {n}</title>'
        f'<updated>2026-12-04T10:00:00Z</updated><link href="https://blog.example/{n}"/>'
        f'<summary type="html">{relative_links(links).replace("<", "&lt;")}</summary></entry>'
        for n in range(entries)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<id>urn:feed</id><title>Hostile</title><updated>2026-12-04T10:00:00Z</updated>"
        f"{items}</feed>"
    ).encode()


async def test_a_small_hostile_feed_makes_bounded_bodies(
    feed_server: FeedServer, receiver: Receiver, tmp_path: Path
) -> None:
    document = hostile_atom(entries=30, links=300)
    feed = feed_server.static("/hostile.atom", document, content_type="application/atom+xml")
    config = write(tmp_path / "config.toml", [feed], {"alice": (receiver.url("alice"), [feed])})
    await run_once_from(config)
    with closing(sqlite3.connect(tmp_path / "rssd.sqlite3")) as conn:
        bodies = [row[0] for row in conn.execute("SELECT body FROM deliveries")]
        summaries = [row[0] for row in conn.execute("SELECT summary FROM posts")]
    assert len(summaries) == 30
    sent = sum(len(body.encode()) for body in bodies)
    # Before: each summary grew 300 x 2,000 characters: 18 MB of bodies from 0.3 MB.
    assert sent <= 3 * len(document), (sent, len(document))
    assert all(len(body.encode()) <= MAX_MESSAGE_BYTES for body in bodies)
    assert all(len(summary) < 20_000 for summary in summaries)
    assert sum(len(item.body["data"]["posts"]) for item in receiver.received) == 30
