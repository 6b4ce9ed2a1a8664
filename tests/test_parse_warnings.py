"""Which feedparser complaints become a ``feed.malformed`` warning, and which do not."""

from __future__ import annotations

import pytest

from rssd.fetch.parse import parse_document
from tests.conftest import rss

FEED = rss([{"guid": "urn:1", "title": "one"}]).encode()


@pytest.mark.parametrize(
    "content_type", [None, "text/html", "text/plain", "application/octet-stream"]
)
def test_a_mislabelled_but_valid_feed_is_not_a_warning(content_type: str | None) -> None:
    outcome = parse_document(FEED, "http://example.org/feed", content_type, False, 10)
    assert outcome.error_code is None
    assert [post.external_id for post in outcome.posts] == ["urn:1"]
    assert outcome.warning is None


def test_a_broken_document_that_still_yields_entries_is_a_warning() -> None:
    broken = FEED.replace(b"</channel></rss>", b"<item><title>two</title></channel>")
    outcome = parse_document(broken, "http://example.org/feed", "application/rss+xml", False, 10)
    assert outcome.posts
    assert outcome.warning is not None
