"""content_digest: what counts as "the same feed" for skipping a parse (issue #5 churn)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rssd.fetch.digest import ENTRY_END, ENTRY_START, content_digest, entries_span

RSS = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
    b"<lastBuildDate>BUILD</lastBuildDate>"
    b"<item><guid>1</guid><title>one</title></item>"
    b"<item><guid>2</guid><title>two</title></item>"
    b"</channel></rss>"
)
ATOM = (
    b'<feed xmlns="http://www.w3.org/2005/Atom"><updated>BUILD</updated>'
    b"<entry><id>1</id></entry><entry><id>2</id></entry></feed>"
)
PREFIXED = (
    b'<a:feed xmlns:a="x"><a:updated>BUILD</a:updated><a:entry><a:id>1</a:id></a:entry></a:feed>'
)


@pytest.mark.parametrize("doc", [RSS, ATOM, PREFIXED])
def test_a_change_outside_the_entries_keeps_the_digest(doc: bytes) -> None:
    assert content_digest(doc) == content_digest(doc.replace(b"BUILD", b"2026-11-29T02:00Z"))


@pytest.mark.parametrize(
    ("doc", "old", "new"),
    [
        (RSS, b"<title>two</title>", b"<title>TWO</title>"),  # an edited entry
        (RSS, b"</item></channel>", b"</item><item><guid>3</guid></item></channel>"),  # added
        (RSS, b"<item><guid>1</guid><title>one</title></item>", b""),  # removed
        (ATOM, b"<id>2</id>", b"<id>2b</id>"),
        (PREFIXED, b"<a:id>1</a:id>", b"<a:id>9</a:id>"),
    ],
)
def test_a_change_inside_the_entries_changes_the_digest(doc: bytes, old: bytes, new: bytes) -> None:
    assert old in doc
    assert content_digest(doc) != content_digest(doc.replace(old, new))


@pytest.mark.parametrize("doc", [b"", b"<html><body>hello</body></html>", b"\x00\xff garbage"])
def test_without_entries_the_whole_body_is_hashed(doc: bytes) -> None:
    assert entries_span(doc) is None
    assert content_digest(doc) == hashlib.sha256(doc).hexdigest()


def test_itemized_words_are_not_entries() -> None:
    # <items> and <entryway> are other elements: only <item>/<entry> tags delimit entries.
    doc = b"<rss><channel><items>x</items><entryway/></channel></rss>"
    assert entries_span(doc) is None


def forward_span(body: bytes) -> tuple[int, int] | None:
    """The plain reading of the rule: first entry start tag, last entry end tag after it."""
    start = ENTRY_START.search(body)
    if start is None:
        return None
    ends = list(ENTRY_END.finditer(body, start.start()))
    return (start.start(), ends[-1].end()) if ends else None


_PIECES = [b"<item>", b"</item>", b"<entry>", b"</entry >", b"</a:item>", b"<x>", b"</x>"]
_PIECES += [b"text", b"</", b"<", b">", b"</item", b"item>", b"</ item>", b"<item/>"]


@given(st.lists(st.sampled_from(_PIECES), max_size=14))
def test_the_backward_scan_finds_what_a_forward_scan_finds(pieces: list[bytes]) -> None:
    body = b"".join(pieces)
    assert entries_span(body) == forward_span(body)
