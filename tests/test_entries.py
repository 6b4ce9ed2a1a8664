"""rssd.fetch.entries on plain dicts: clean_text, to_utc_iso, entry_to_post, table-driven."""

from __future__ import annotations

import time
from typing import Any

import pytest

from rssd.fetch.entries import (
    MAX_FIELD_CHARS,
    clean_text,
    content_hash,
    entry_date,
    entry_to_post,
    parse_date_text,
    to_utc_iso,
)
from rssd.models.changes import dedupe_posts
from rssd.models.search import document


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("  padded\n", "padded"),
        ("", None),
        ("   \n\t", None),
        ("a\x00b\x01c\x08d", "abcd"),  # C0 controls
        ("a\x0bb\x0cc\x0ed\x1fe", "abcde"),  # VT, FF and the rest of C0
        ("a\x7fb", "ab"),  # DEL
        ("a\x80b\x85c\x9fd", "abcd"),  # C1 controls
        ("keep\ttab\nnewline\rreturn", "keep\ttab\nnewline\rreturn"),
        ("\x00\x01\x7f", None),  # nothing left
        ("\x00  inner  \x00", "inner"),
        ("caf\u00e9 \u2014 \U0001f600", "caf\u00e9 \u2014 \U0001f600"),  # not controls
        ("zero\u200bwidth", "zero\u200bwidth"),
        (None, None),
        (42, None),
        (b"bytes", None),
        (["a"], None),
    ],
)
def test_clean_text(value: object, expected: str | None) -> None:
    assert clean_text(value) == expected


def test_clean_text_caps_field_length() -> None:
    cleaned = clean_text("x" * (MAX_FIELD_CHARS + 10))
    assert cleaned is not None
    assert len(cleaned) == MAX_FIELD_CHARS


def struct(*fields: int) -> time.struct_time:
    """A struct_time as feedparser makes them: (Y, M, D, h, m, s, wday, yday, isdst)."""
    return time.struct_time((*fields, 0, 0, 0))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (time.gmtime(0), "1970-01-01T00:00:00.000Z"),
        (struct(2003, 6, 3, 7, 39, 21), "2003-06-03T07:39:21.000Z"),
        (struct(2024, 2, 29, 23, 59, 59), "2024-02-29T23:59:59.000Z"),
        (struct(1969, 12, 31, 23, 0, 0), "1969-12-31T23:00:00.000Z"),  # before the epoch
        (struct(9999, 12, 31, 23, 59, 59), "9999-12-31T23:59:59.000Z"),
        (struct(10000, 1, 1, 0, 0, 0), None),  # beyond datetime
        (struct(0, 1, 1, 0, 0, 0), None),  # year 0 does not exist
        (None, None),
        ("2003-06-03T07:39:21Z", None),  # strings are not parsed here
        ((2003, 6, 3, 7, 39, 21, 0, 0, 0), None),  # a plain tuple is not a struct_time
    ],
)
def test_to_utc_iso(value: object, expected: str | None) -> None:
    assert to_utc_iso(value) == expected


# entry_to_post: the fields every post has, and how external_id is chosen.

FULL: dict[str, Any] = {
    "id": "urn:1",
    "title": " Title ",
    "link": "http://e.org/1",
    "author": "Ann",
    "summary": "Sum",
    "content": [{"type": "text/html", "value": "<p>Body</p>"}],
    "published_parsed": struct(2020, 1, 2, 3, 4, 5),
    "updated_parsed": struct(2020, 1, 3, 3, 4, 5),
    "tags": [{"term": "linux", "scheme": None, "label": None}, {"term": "linux"}, {"label": "Go"}],
    "links": [
        {"rel": "alternate", "href": "http://e.org/1"},
        {"rel": "enclosure", "href": "https://e.org/a.mp3", "type": "audio/mpeg", "length": "1234"},
        {"rel": "enclosure", "href": "javascript:alert(1)", "type": "text/html"},
        {"rel": "enclosure", "href": "https://e.org/b.ogg", "length": "unknown"},
    ],
}


def test_entry_to_post_maps_every_field() -> None:
    post = entry_to_post(FULL)
    assert {k: v for k, v in post.as_row().items() if k != "content_hash"} == {
        "external_id": "urn:1",
        "title": "Title",
        "url": "http://e.org/1",
        "author": "Ann",
        "summary": "Sum",
        "content": "<p>Body</p>",
        "published_at": "2020-01-02T03:04:05.000Z",
        "updated_at": "2020-01-03T03:04:05.000Z",
        "tags": '["linux", "Go"]',
        "enclosures": '[{"url": "https://e.org/a.mp3", "type": "audio/mpeg", "length": 1234}, '
        '{"url": "https://e.org/b.ogg", "type": null, "length": null}]',
    }
    # Tags and enclosures are not hashed: posts stored before they were kept stay unedited.
    hashed = {"content_hash", "external_id", "tags", "enclosures"}
    fields = {k: v for k, v in post.as_row().items() if k not in hashed}
    assert post.content_hash == content_hash(fields)
    # The search text, computed here in the worker, is that of the stored columns: it is
    # what a later removal from SQLite's index recomputes from the row.
    assert post.search_doc == document(post.title, post.summary, post.content, post.author)
    assert post.search_doc is not None and post.search_doc.body == "Sum Body"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"id": "urn:1", "link": "http://e.org/1"}, "urn:1"),
        ({"id": "  urn:1  ", "link": "http://e.org/1"}, "urn:1"),  # cleaned like any text
        ({"id": "", "link": "http://e.org/1"}, "http://e.org/1"),
        ({"id": " \x00 ", "link": "http://e.org/1"}, "http://e.org/1"),
        ({"id": None, "link": "http://e.org/1"}, "http://e.org/1"),
        ({"link": "http://e.org/1"}, "http://e.org/1"),
        ({"id": 17, "link": "http://e.org/1"}, "http://e.org/1"),  # not text: ignored
        ({"title": "t"}, "sha256:"),
        ({"link": "   ", "title": "t"}, "sha256:"),
        ({}, "sha256:"),
    ],
)
def test_external_id_choice(entry: dict[str, Any], expected: str) -> None:
    post = entry_to_post(entry)
    if expected == "sha256:":
        assert post.external_id == f"sha256:{post.content_hash}"
    else:
        assert post.external_id == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            [{"type": "text/plain", "value": "plain"}, {"type": "text/html", "value": "<b>h</b>"}],
            "<b>h</b>",  # an HTML part is preferred
        ),
        (
            [{"type": "application/xhtml+xml", "value": "<p>x</p>"}],
            "<p>x</p>",
        ),
        ([{"type": "text/plain", "value": "first"}, {"value": "second"}], "first"),
        ([{"value": "  untyped  "}], "untyped"),
        ([{"type": "text/html", "value": ""}], None),
        ([{"type": "text/html"}], None),
        ([], None),
        (None, None),
        ("not a list", None),
    ],
)
def test_content_part_choice(content: object, expected: str | None) -> None:
    assert entry_to_post({"id": "x", "content": content}).content == expected


def test_content_hash_ignores_the_id_and_sees_every_shown_field() -> None:
    base = entry_to_post(FULL)
    assert entry_to_post({**FULL, "id": "urn:other"}).content_hash == base.content_hash
    assert entry_to_post(dict(FULL)).content_hash == base.content_hash  # deterministic
    for field, value in [
        ("title", "Other"),
        ("link", "http://e.org/2"),
        ("author", "Bob"),
        ("summary", "Other sum"),
        ("content", [{"type": "text/html", "value": "<p>Edited</p>"}]),
        ("published_parsed", struct(2021, 1, 1, 0, 0, 0)),
        ("updated_parsed", struct(2021, 1, 1, 0, 0, 0)),
    ]:
        assert entry_to_post({**FULL, field: value}).content_hash != base.content_hash, field


def test_whitespace_only_edits_do_not_change_the_hash() -> None:
    # Fields are cleaned before hashing: surrounding blanks and controls are not an edit.
    assert (
        entry_to_post({**FULL, "title": "\x00Title\n"}).content_hash
        == entry_to_post(FULL).content_hash
    )


def test_posts_keep_order_and_the_first_duplicate() -> None:
    entries: list[dict[str, Any]] = [
        {"id": "a", "title": "first a"},
        {"id": "b", "title": "b"},
        {"id": "a", "title": "second a"},
        {"link": "http://e.org/c", "title": "c"},
        {"link": "http://e.org/c", "title": "c again"},
        {"title": "hashed"},
        {"title": "hashed"},
    ]
    posts = dedupe_posts([entry_to_post(entry) for entry in entries])  # as the worker does
    assert [post.title for post in posts] == ["first a", "b", "c", "hashed"]
    assert dedupe_posts([]) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tue, 03 Jun 2003 09:39:21 GMT", "2003-06-03T09:39:21.000Z"),
        ("Tue, 03 Jun 2003 09:39:21 +0200", "2003-06-03T07:39:21.000Z"),
        ("Tue, 03 Jun 2003 09:39:21", "2003-06-03T09:39:21.000Z"),  # no zone: UTC
        ("Tue, 03 Jun 2003 09:39:21 -0000", "2003-06-03T09:39:21.000Z"),  # "unknown": UTC
        ("  03 Jun 2003 09:39:21 +0000  ", "2003-06-03T09:39:21.000Z"),
        ("2003-06-03T09:39:21+02:00", "2003-06-03T07:39:21.000Z"),
        ("2003-06-03T09:39:21Z", "2003-06-03T09:39:21.000Z"),
        ("2003-06-03T09:39:21", "2003-06-03T09:39:21.000Z"),
        ("2003-06-03", "2003-06-03T00:00:00.000Z"),
        ("0001-01-01T00:00:00+01:00", None),  # before year 1 in UTC
        ("Tue, 03 Jun 99999 09:39:21 GMT", None),
        ("Tue, 31 Feb 2003 09:39:21 GMT", None),
        ("yesterday", None),
        ("", None),
        ("   ", None),
        (None, None),
        (20030603, None),
    ],
)
def test_parse_date_text(text: object, expected: str | None) -> None:
    assert parse_date_text(text) == expected


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (  # feedparser's parse wins
            {"published_parsed": struct(2020, 1, 2, 3, 4, 5), "published": "garbage"},
            "2020-01-02T03:04:05.000Z",
        ),
        (  # feedparser gave up: the raw text is read
            {"published_parsed": None, "published": "Thu, 02 Jan 2020 03:04:05"},
            "2020-01-02T03:04:05.000Z",
        ),
        ({"published": "not a date"}, None),
        ({}, None),
        ({"updated_parsed": struct(2021, 1, 1, 0, 0, 0)}, None),  # no cross-over
    ],
)
def test_entry_date_published(entry: dict[str, Any], expected: str | None) -> None:
    assert entry_date(entry, "published") == expected


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"link": "http://e.org/1"}, "http://e.org/1"),
        ({"link": "https://e.org/1", "guidislink": True}, "https://e.org/1"),
        ({"link": "HTTP://E.ORG/1", "guidislink": True}, "HTTP://E.ORG/1"),
        ({"link": "tag:e.org,2020:1", "guidislink": True}, None),  # an id, not a link
        ({"link": "urn:uuid:1", "guidislink": True}, None),
        ({"link": "urn:uuid:1", "guidislink": False}, None),  # not http(s): no link
        ({"link": "  "}, None),
    ],
)
def test_url_is_not_an_id_copied_by_feedparser(entry: dict[str, Any], expected: str | None) -> None:
    assert entry_to_post(entry).url == expected
