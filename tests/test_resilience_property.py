"""Property-based: feed-like documents, valid, truncated and byte-mutated, through the parse
step (``parse_document``, in-process, as a worker runs it). rssd's own code never raises
on them (only feedparser may, and the worker turns that into parse_error); the outcome is
valid PostCreate objects, or an error code (parse_error / not_a_feed) and no posts."""

from __future__ import annotations

import os
import re
import traceback
from dataclasses import dataclass
from xml.sax.saxutils import escape

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rssd.fetch import parsing
from rssd.fetch.charrefs import repair_char_refs
from rssd.fetch.parse import ParseOutcome, parse_document
from rssd.models.dto import ErrorCode, PostCreate

URL = "http://example.org/feed"
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
HEX64 = re.compile("[0-9a-f]{64}")
SETTINGS = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Text XML 1.0 can carry (what a well-formed feed holds).
xml_text = st.text(
    st.characters(codec="utf-8", exclude_characters=[*map(chr, range(0x20)), "\ufffe", "\uffff"]),
    max_size=60,
)
#: Anything, control characters and lone surrogates excepted (they cannot be encoded).
any_text = st.text(st.characters(codec="utf-8"), max_size=60)
dates = st.sampled_from(
    [
        "Fri, 01 Mar 2024 10:00:00 GMT",
        "Fri, 01 Mar 2024 10:00:00",
        "2024-03-01T10:00:00Z",
        "2024-03-01T10:00:00",
        "Fri, 31 Dec 9999 23:59:59 -1200",
        "yesterday",
        "",
        "0000-00-00",
    ]
)


@dataclass(frozen=True)
class Entry:
    title: str
    summary: str
    link: str | None
    date: str | None


def entries(text: st.SearchStrategy[str]) -> st.SearchStrategy[list[Entry]]:
    entry = st.builds(
        Entry,
        title=text,
        summary=text,
        link=st.one_of(st.none(), st.integers(0, 99).map(lambda n: f"http://example.org/{n}")),
        date=st.one_of(st.none(), dates),
    )
    return st.lists(entry, max_size=8)


def render(kind: str, title: str, items: list[Entry]) -> bytes:
    """An RSS 2.0 or Atom document; entry i has the id ``urn:test:i``."""
    if kind == "rss":
        body = "".join(
            f"<item><guid isPermaLink='false'>urn:test:{i}</guid><title>{escape(e.title)}</title>"
            f"<description>{escape(e.summary)}</description>"
            + (f"<link>{e.link}</link>" if e.link else "")
            + (f"<pubDate>{escape(e.date)}</pubDate>" if e.date is not None else "")
            + "</item>"
            for i, e in enumerate(items)
        )
        document = (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{escape(title)}</title><link>http://example.org/</link>{body}</channel></rss>"
        )
    else:
        body = "".join(
            f"<entry><id>urn:test:{i}</id><title>{escape(e.title)}</title>"
            f"<summary>{escape(e.summary)}</summary>"
            + (f'<link href="{e.link}"/>' if e.link else "")
            + (f"<updated>{escape(e.date)}</updated>" if e.date is not None else "")
            + "</entry>"
            for i, e in enumerate(items)
        )
        document = (
            '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>{escape(title)}</title><id>urn:test</id>{body}</feed>"
        )
    return document.encode("utf-8", "surrogatepass")


def parse(body: bytes) -> ParseOutcome:
    """The worker's parse minus its catch-all (``parse_document`` turns any exception into
    ``parse_error``, so "it never raises" would hold whatever rssd's own code did). Here an
    exception may only come out of feedparser itself; one raised by rssd's code (entries,
    sanitizer, item cutting) fails the property. Then the outcome the worker would give."""
    try:
        parsing.parse_new(repair_char_refs(body), URL, "application/xml", True, b"")
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [i for i, frame in enumerate(frames) if f"{os.sep}rssd{os.sep}" in frame.filename]
        last = ours[-1] if ours else -1
        below = frames[last + 1].filename if last + 1 < len(frames) else "<raised by rssd>"
        assert f"{os.sep}feedparser{os.sep}" in below, (
            f"rssd's own code raised {exc!r}:\n{''.join(traceback.format_list(frames))}"
        )
    return parse_document(body, URL, "application/xml", True, 10)


def check_outcome(outcome: ParseOutcome) -> None:
    """The contract of the parse step, whatever the input."""
    assert isinstance(outcome, ParseOutcome)
    if outcome.error_code is not None:
        assert outcome.error_code in (ErrorCode.PARSE_ERROR, ErrorCode.NOT_A_FEED), outcome
        assert outcome.posts == ()
        assert outcome.message
        return
    ids = [post.external_id for post in outcome.posts]
    assert len(ids) == len(set(ids)), "duplicate external_id within one document"
    for post in outcome.posts:
        assert isinstance(post, PostCreate)
        assert all(value is None or isinstance(value, str) for value in post.as_row().values())
        assert post.external_id
        assert HEX64.fullmatch(post.content_hash)
        for value in post.as_row().values():
            if isinstance(value, str):
                assert not CONTROL.search(value), value
                value.encode("utf-8")  # storable: no lone surrogate
        for date in (post.published_at, post.updated_at):
            assert date is None or re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", date)


@SETTINGS
@given(kind=st.sampled_from(["rss", "atom"]), title=xml_text, items=entries(xml_text))
def test_valid_documents_give_one_post_per_entry(kind: str, title: str, items: list[Entry]) -> None:
    outcome = parse(render(kind, title, items))
    check_outcome(outcome)
    assert outcome.error_code is None, outcome
    assert [post.external_id for post in outcome.posts] == [
        f"urn:test:{i}" for i in range(len(items))
    ]


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """A feed-like document, then cut short, or with bytes replaced, inserted or deleted."""
    body = render(draw(st.sampled_from(["rss", "atom"])), draw(any_text), draw(entries(any_text)))
    how = draw(st.sampled_from(["as is", "truncated", "replaced", "inserted", "deleted"]))
    if how == "truncated":
        return body[: draw(st.integers(0, len(body)))]
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        if how == "replaced" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif how == "inserted":
            data[at:at] = draw(
                st.one_of(
                    st.binary(min_size=1, max_size=8),
                    st.sampled_from(
                        [b"&#xD800;", b"&#x110000;", b"<!DOCTYPE x [", b"]]>", b"<![CDATA[",
                         b"&amp", b"\x00", b"\xff\xfe", b"<item>", b"</channel>", b"&#0;"]
                    ),
                )
            )  # fmt: skip
        elif how == "deleted":
            del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


@SETTINGS
@given(body=hostile())
def test_mangled_documents_never_raise(body: bytes) -> None:
    check_outcome(parse(body))


@settings(max_examples=200, deadline=None, database=None)
@given(body=st.binary(max_size=2048))
def test_arbitrary_bytes_never_raise(body: bytes) -> None:
    check_outcome(parse(body))
