"""Golden fixtures: one document per feed format, the expected posts stored beside it.

tests/fixtures/feeds/<name>.xml (a JSON Feed: <name>.feed.json) is parsed;
tests/fixtures/feeds/<name>.json holds the expected PostCreate fields (all but
content_hash, which is checked against its definition).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from rssd.fetch.entries import content_hash
from rssd.fetch.parse import ParseOutcome, ParsePool, parse_document
from rssd.models.post import PostCreate
from tests.conftest import FIXTURES

FEEDS = FIXTURES / "feeds"
BASE = "http://example.org/feeds/feed.xml"

# name -> (Content-Type served, feedparser's version, channel title)
FORMATS = {
    "rss091": ("application/rss+xml", "rss091n", "WriteTheWeb"),
    "rss092": ("application/rss+xml", "rss092", "Dave Winer: Grateful Dead"),
    "rss10": ("application/rdf+xml", "rss10", "XML.com"),
    "rss20": ("application/rss+xml", "rss20", "Liftoff News"),
    "atom03": ("application/atom+xml", "atom03", "dive into mark"),
    "atom10": ("application/atom+xml", "atom10", "Example Feed"),
    "jsonfeed10": ("application/json", "json1", "Daring JSON 1.0"),
    "jsonfeed11": ("application/feed+json", "json11", "JSON 1.1 & friends"),
}
#: JSON Feed documents, beside the expected-posts files that are JSON too.
JSON_DOCUMENT = ".feed.json"
HASHED_FIELDS = ("title", "url", "author", "summary", "content", "published_at", "updated_at")


def document(name: str) -> bytes:
    path = FEEDS / f"{name}{JSON_DOCUMENT}"
    return (path if path.exists() else FEEDS / f"{name}.xml").read_bytes()


def expected_posts(name: str) -> list[dict[str, Any]]:
    posts: list[dict[str, Any]] = json.loads((FEEDS / f"{name}.json").read_text("utf-8"))
    return posts


def without_hash(post: PostCreate) -> dict[str, str | None]:
    return {key: value for key, value in post.as_row().items() if key != "content_hash"}


def check(name: str, outcome: ParseOutcome) -> None:
    _, version, title = FORMATS[name]
    assert outcome.error_code is None, outcome.message
    assert outcome.warning is None  # every golden document is well-formed
    assert outcome.version == version
    assert outcome.title == title
    assert [without_hash(post) for post in outcome.posts] == (expected_posts(name))
    for post in outcome.posts:
        assert post.content_hash == content_hash({f: getattr(post, f) for f in HASHED_FIELDS})
        if post.external_id.startswith("sha256:"):  # no id, no link: the content hash
            assert post.external_id == f"sha256:{post.content_hash}"


def test_every_format_has_a_golden_pair() -> None:
    documents = [path.stem for path in FEEDS.glob("*.xml")] + [
        path.name.removesuffix(JSON_DOCUMENT) for path in FEEDS.glob(f"*{JSON_DOCUMENT}")
    ]
    assert sorted(documents) == sorted(FORMATS)
    expected = [p.stem for p in FEEDS.glob("*.json") if not p.name.endswith(JSON_DOCUMENT)]
    assert sorted(expected) == sorted(FORMATS)
    for name in FORMATS:
        assert expected_posts(name), f"{name}.json lists no posts"


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_golden_in_process(name: str) -> None:
    check(name, parse_document(document(name), BASE, FORMATS[name][0], True, 10.0))


@pytest.fixture(scope="module")
def pool() -> Iterator[ParsePool]:
    parse_pool = ParsePool(workers=2, timeout=60.0)  # a hang guard: these documents are small
    try:
        yield parse_pool
    finally:
        parse_pool.close()


@pytest.mark.parametrize("name", sorted(FORMATS))
async def test_golden_through_the_process_pool(pool: ParsePool, name: str) -> None:
    check(name, await pool.parse(document(name), BASE, FORMATS[name][0], sanitize=True))


def test_rss20_specifics() -> None:
    """What the rss20 golden file exercises, spelled out."""
    body = (FEEDS / "rss20.xml").read_bytes()
    outcome = parse_document(body, BASE, "application/rss+xml", True, 10.0)
    by_id = {post.external_id: post for post in outcome.posts}
    # Five items, one a duplicate guid: four posts, and the first copy won.
    assert len(outcome.posts) == 4
    first = by_id["urn:uuid:8f1c3a54-1b0e-4a57-9a0b-000000000573"]
    assert first.title == "Star City"
    assert first.published_at == "2003-06-03T07:39:21.000Z"  # +0200 converted to UTC
    assert by_id["item-569"].published_at is None  # "not a date at all"
    assert by_id["item-569"].title == "Controls  stripped,   ends trimmed"  # DEL removed
    assert outcome.ttl_minutes == 30
