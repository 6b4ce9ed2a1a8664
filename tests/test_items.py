"""Parsing only new items: the byte split, and that a cut document parses as the whole did."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest

from rssd.fetch.items import (
    DIGEST_SIZE,
    RECORD_SIZE,
    id_digest,
    new_items,
    pack,
    split_items,
    unpack,
)
from rssd.fetch.parse import ParseOutcome, parse_document
from tests.conftest import FIXTURES

BASE = "http://example.org/feeds/feed.xml"
HEAD = b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
TAIL = b"</channel></rss>"


def rss(*items: bytes, head: bytes = HEAD) -> bytes:
    return head + b"".join(items) + TAIL


A = b"<item><guid>urn:a</guid><title>A</title></item>"
B = b"<item><guid>urn:b</guid><title>B</title></item>"
C = b'<item rdf:about="c"><title>C</title></item>'

SPLITS = [
    # (body, the items the split must find; None: no safe split)
    (rss(A, B), [A, B]),
    (rss(A, b"\n  <!-- between -->\n", B), [A, B]),
    (rss(C), [C]),
    (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>x</id></entry></feed>',
        [b"<entry><id>x</id></entry>"],
    ),
    (
        b'<rdf:RDF><channel><items><rdf:Seq><rdf:li resource="c"/></rdf:Seq></items></channel>'
        + C
        + b"</rdf:RDF>",
        [C],
    ),  # <items> is not an item
    (b"<rss><channel><atom:entry>e</atom:entry></channel></rss>", [b"<atom:entry>e</atom:entry>"]),
    (rss(), None),  # no items
    (b"not xml at all", None),
    (rss(b"<item><title>no end</title>"), None),
    (rss(b"<item/>", A), None),  # self-closing: its "end" would be the next item's
    (rss(b"<item><item>nested</item></item>"), None),
]


@pytest.mark.parametrize(("body", "expected"), SPLITS)
def test_split_finds_each_item_or_refuses(body: bytes, expected: list[bytes] | None) -> None:
    split = split_items(body)
    if expected is None:
        assert split is None
        return
    assert split is not None
    assert [body[start:end] for start, end in split.spans] == expected
    assert all(len(digest) == DIGEST_SIZE for digest in split.digests)


def digests(body: bytes) -> tuple[bytes, ...]:
    split = split_items(body)
    assert split is not None
    return split.digests


def test_an_item_keeps_its_print_when_others_or_the_channel_change() -> None:
    before = digests(rss(A, B))
    after = digests(rss(B, A, head=HEAD.replace(b"<title>T</title>", b"<lastBuildDate>now")))
    assert set(before) == set(after)


@pytest.mark.parametrize(
    "head",
    [
        HEAD.replace(b"<?xml version", b'<?xml encoding="iso-8859-1" version'),
        HEAD.replace(b'<rss version="2.0">', b'<rss version="2.0" xml:base="http://o.example/">'),
        b'<!DOCTYPE rss [<!ENTITY e "x">]>' + HEAD,
    ],
)
def test_every_print_changes_with_what_the_items_are_read_in(head: bytes) -> None:
    """Encoding, entities, namespaces and base are declared before the channel starts."""
    assert not set(digests(rss(A, B))) & set(digests(rss(A, B, head=head)))


def test_an_edited_item_gets_a_new_print() -> None:
    edited = A.replace(b"<title>A</title>", b"<title>A, edited</title>")
    assert digests(rss(A, B))[1] == digests(rss(edited, B))[1]
    assert digests(rss(A, B))[0] != digests(rss(edited, B))[0]


def test_new_items_cuts_the_seen_and_keeps_duplicates_once() -> None:
    body = rss(A, B, A, C)
    split = split_items(body)
    assert split is not None
    a, b, _, c = split.digests
    part = new_items(body, split, {b})
    assert part.body == rss(A, C)
    assert (part.kept, part.skipped) == ((a, c), 2)
    nothing = new_items(body, split, set(split.digests))
    assert (nothing.body, nothing.kept, nothing.skipped) == (rss(), (), 4)


def test_records_round_trip_and_a_torn_tail_is_ignored() -> None:
    records = {b"a" * DIGEST_SIZE: id_digest("urn:a"), b"b" * DIGEST_SIZE: id_digest("b")}
    assert len(pack(records)) == 2 * RECORD_SIZE
    assert unpack(pack(records)) == records
    assert unpack(pack(records) + b"torn") == records
    assert unpack(b"") == {}


# The property that matters: parsing a document with some items already seen gives exactly
# the posts a whole parse gives for the other items. Checked on every golden document for
# every way of having seen one or two of its items.

GOLDEN = sorted((FIXTURES / "feeds").glob("*.xml"))


def parse(body: bytes, seen: bytes = b"") -> ParseOutcome:
    outcome = parse_document(body, BASE, None, True, 10.0, seen=seen)
    assert outcome.error_code is None, outcome.message
    return outcome


def stored(body: bytes) -> bytes:
    """What a first, whole parse of ``body`` stores."""
    return parse(body).seen_items


def seen_only(body: bytes, indices: tuple[int, ...]) -> bytes:
    """The stored records of ``body`` restricted to some of its items."""
    split = split_items(body)
    assert split is not None
    records = unpack(stored(body))
    return pack({split.digests[i]: records[split.digests[i]] for i in indices})


@pytest.mark.parametrize("path", GOLDEN, ids=[path.stem for path in GOLDEN])
def test_a_cut_document_parses_as_the_whole_did(path: Path) -> None:
    body = path.read_bytes()
    split = split_items(body)
    assert split is not None, "every golden document can be cut"
    whole = parse(body)
    assert set(unpack(whole.seen_items)) == set(split.digests)
    by_id = {post.external_id: post for post in whole.posts}
    for size in (1, 2, 3):
        for chosen in combinations(range(len(split.digests)), size):
            cut = parse(body, seen_only(body, chosen))
            assert cut.seen_items == whole.seen_items
            if cut.all_seen:
                assert not cut.posts
                continue
            assert (cut.version, cut.title, cut.ttl_minutes) == (
                whole.version,
                whole.title,
                whole.ttl_minutes,
            )
            for post in cut.posts:
                assert post == by_id[post.external_id], f"{path.stem} {chosen}"


def test_a_new_copy_of_a_seen_id_makes_the_whole_document_parse() -> None:
    """Two items, one guid: the whole parse keeps the first copy, so must this one."""
    first = b"<item><guid>urn:a</guid><title>first</title></item>"
    second = b"<item><guid>urn:a</guid><title>second</title></item>"
    outcome = parse(rss(first, second, B), stored(rss(first, B)))
    assert outcome.skipped == 0
    assert sorted((post.external_id, post.title) for post in outcome.posts) == [
        ("urn:a", "first"),
        ("urn:b", "B"),
    ]


def test_all_items_seen_means_nothing_is_parsed() -> None:
    body = rss(A, B)
    outcome = parse(body, stored(body))
    assert outcome.all_seen
    assert (outcome.posts, outcome.skipped, outcome.version) == ((), 2, None)


def test_only_the_new_item_is_parsed() -> None:
    outcome = parse(rss(B, A), stored(rss(A)))
    assert [post.external_id for post in outcome.posts] == ["urn:b"]
    assert outcome.skipped == 1
    assert set(unpack(outcome.seen_items)) == set(digests(rss(B, A)))
    assert outcome.seen_items == stored(rss(B, A)), "as a whole parse would have stored"


def test_a_wrong_cut_falls_back_to_the_whole_document() -> None:
    """A ``</item>`` inside CDATA fools the byte scan: cutting that seen item leaves the
    rest of it behind, the cut document does not read cleanly, and the whole document is
    parsed instead."""
    tricky = b"<item><guid>urn:t</guid><description><![CDATA[x</item>y]]></description></item>"
    outcome = parse(rss(tricky, B), stored(rss(tricky)))
    assert sorted(post.external_id for post in outcome.posts) == ["urn:b", "urn:t"]
    assert outcome.skipped == 0
    (t,) = [post for post in outcome.posts if post.external_id == "urn:t"]
    assert t.summary == "xy"  # the whole item was read; nh3 drops the stray </item>


def test_a_document_that_cannot_be_cut_is_parsed_whole_and_clears_the_prints() -> None:
    outcome = parse(rss(b"<item/>", A), stored(rss(A)))
    assert "urn:a" in [post.external_id for post in outcome.posts]
    assert (outcome.seen_items, outcome.skipped) == (b"", 0)
