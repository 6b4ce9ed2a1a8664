"""feedparser-rs (Rust) as the first parser: its result in feedparser's shape, or None.

feedparser is pure Python: on the bench farm it was most of a cold feed's worker CPU
(bench/README.md), and a very large feed took longer than the parse limit. feedparser-rs reads
the same formats natively with a feedparser-like API. The worker (rssd.fetch.worker) tries
it first and falls back to feedparser, which stays the reference, wherever this module
returns None:

- feedparser-rs raised;
- it reported an error (``bozo``): feedparser's recovering parser reads a malformed
  document further, and a document feedparser stores today must store the same posts;
- it found no feed (no version, no entries): feedparser decides what the document is
  (an HTML page to scan for feed links, or not a feed);
- an RSS text element holds raw markup (``_RAW_MARKUP``), which feedparser-rs drops;
- the document is not the UTF-8 feedparser-rs took it for (``_misread_utf8``).

JSON Feeds never come here: rssd.fetch.jsonfeed reads them. Run through this module on the
golden JSON Feeds, feedparser-rs lost ``date_modified``, ``external_url``, every author but
the first, and the escaping of a text ``summary``, and it turned numeric ids into URLs
(tests/test_parse_differential.py shows it), so rssd's own reader stays the one JSON path.

What comes back is plain dicts with the keys rssd.fetch.entries and rssd.fetch.sanitize
read from feedparser's entries, so everything after parsing (nh3, plain-text titles, the
date fallback, ids) is the same code for both parsers. Where the two libraries disagree
on a value, ``tests/test_parse_differential.py`` lists the case and why it is acceptable.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import feedparser_rs
from feedparser.datetimes import _parse_date
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.urls import _urljoin
from msgspec import Struct

#: feedparser-rs's own caps, raised to rssd's: the body is already capped by
#: ``max_body_bytes`` (decompressed) and the parse by its time limit; 10,000 entries (the
#: library's default) would silently drop the end of a long feed.
_LIMITS = feedparser_rs.ParserLimits(
    max_feed_size_bytes=1 << 31,
    max_entries=1_000_000,
)

#: An RSS text element holding raw (unescaped, not CDATA) markup: ``<description>text
#: <b>bold</b></description>``. Invalid, but seen in the wild; feedparser keeps the markup
#: as the element's HTML, feedparser-rs keeps only the text of the last child, so such a
#: document goes to feedparser. Bounded repetitions: linear on any input.
_RAW_MARKUP = re.compile(
    rb"<(?:title|description|author|content:encoded|dc:creator)(?:\s[^>]{0,500})?>"
    rb"[^<]*<(?![/!])"
)


class NativeParse(Struct, frozen=True):
    """A document feedparser-rs read cleanly, in feedparser's shape."""

    version: str
    feed: dict[str, Any]
    entries: list[dict[str, Any]]


def parse_native(body: bytes, url: str) -> NativeParse | None:
    """``body`` read by feedparser-rs, or None where feedparser must read it instead.
    May raise (the library on hostile input): the caller falls back then too, but must
    let its own time limit's exception through.

    Always bytes, never str: given a string that looks like a URL, feedparser-rs fetches
    it. Its sanitizer is off (nh3 cleans every HTML field afterwards, rssd.fetch.sanitize);
    its URI resolution is on, which resolves links against their ``xml:base``.
    """
    parsed = feedparser_rs.parse_with_limits(
        bytes(body), limits=_LIMITS, sanitize_html=False, resolve_relative_uris=False
    )
    version = parsed.version or ""
    if parsed.bozo or not version or version.startswith("json"):
        return None  # JSON Feed: rssd.fetch.jsonfeed is the one reader (see the module doc)
    if _misread_utf8(parsed.encoding, body):
        return None
    atom = version.startswith("atom")
    if not atom and _RAW_MARKUP.search(body):
        return None
    feed = _feed(parsed.feed, url, atom)
    # feedparser-rs gives an RSS channel's <link> as every base; feedparser (and rssd)
    # resolve an RSS document's relative URLs against the URL it was fetched from.
    base = (_base(parsed.feed) if atom else None) or url
    guids = _Guids(body) if not atom else None
    entries = [_entry(entry, base, atom, guids) for entry in parsed.entries]
    return NativeParse(version, feed, entries)


def _misread_utf8(encoding: object, body: bytes) -> bool:
    """Whether feedparser-rs read as UTF-8 a document that is not: it replaces the bad
    bytes with U+FFFD, where feedparser notices and reads the document as Windows-1252
    (a Latin-1 feed labelled UTF-8 keeps its accents)."""
    if str(encoding or "utf-8").lower().replace("_", "-") not in ("utf-8", "utf8"):
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


_ENTITY_IN_LINK = re.compile("&([A-Za-z0-9_]+);")
_XML_REF = re.compile("&(amp|lt|gt|quot|apos|#[0-9]{1,8}|#x[0-9A-Fa-f]{1,8});")
_XML_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _repair_link(link: str) -> str:
    """feedparser's repair of an RSS link whose query was escaped once too often
    (``?a=1&amp;b=2`` in the text: ``&`` again)."""
    return _ENTITY_IN_LINK.sub(r"&\1", link.replace("&amp;", "&"))


def _xml_unescape(value: str) -> str:
    """An attribute's references decoded: feedparser-rs gives an Atom ``<link href>``
    as written (``?a=1&amp;b=2``), feedparser (and XML) decode it."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name[0] != "#":
            return _XML_NAMED[name]
        code = int(name[2:], 16) if name[1] in "xX" else int(name[1:])
        return chr(code) if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else ""

    return _XML_REF.sub(one, value)


class _Guids:
    """Whether each RSS ``<guid>`` is a permalink: feedparser resolves a relative guid
    against the feed's URL unless it says ``isPermaLink="false"``, and feedparser-rs does
    not report the attribute. The document's guids are scanned once, in order, and only
    when a relative guid asks."""

    _GUID = re.compile(rb"<guid(\s[^>]{0,500})?>([^<]{0,2000})</guid>")
    _NOT_PERMALINK = re.compile(rb"ispermalink\s*=\s*[\"']false", re.IGNORECASE)

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._found: list[tuple[str, bool]] | None = None
        self._next = 0

    def permalink(self, guid: str) -> bool:
        """For the entries' relative guids in document order."""
        if self._found is None:
            self._found = [
                (text.decode("utf-8", "replace").strip(), not self._NOT_PERMALINK.search(attrs))
                for attrs, text in self._GUID.findall(self._body)
            ]
        wanted = guid.strip()
        for index in range(self._next, len(self._found)):
            text, permalink = self._found[index]
            if text == wanted:
                self._next = index + 1
                return permalink
        return True


def _base(item: Any) -> str | None:
    """The ``xml:base`` in force for a feed or an entry, as feedparser-rs reports it (on
    the text constructs only)."""
    for detail in (item.title_detail, item.get("summary_detail")):
        if detail is not None and isinstance(detail.base, str):
            return str(detail.base)
    for part in item.get("content") or ():
        if isinstance(part.base, str):
            return str(part.base)
    return None


def _str(value: object) -> str | None:
    return _as_feedparser(value) if isinstance(value, str) else None


def _as_feedparser(text: str) -> str:
    """The two repairs feedparser makes to every text it reads, made here too so both
    parsers store the same: UTF-8 that was read as Latin-1 and re-encoded (``Ã©``) is
    decoded again, and C1 controls become the Windows-1252 characters publishers meant
    (``\x93`` -> a quote)."""
    if text.isascii():
        return text
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        text = text.encode("iso-8859-1").decode("utf-8")
    return text.translate(_cp1252)


def _detail(detail: Any, base: str) -> dict[str, Any] | None:
    if detail is None:
        return None
    return {"type": detail.type, "base": base, "value": _str(detail.value)}


#: Markup or a character reference: what makes an Atom title HTML here (below).
_MARKUP = re.compile(r"<[A-Za-z/!]|&(?:#\d|#x[0-9A-Fa-f]|[A-Za-z]+;)")


def title_is_html(value: str, atom: bool) -> bool:
    """Whether a title feedparser-rs calls text/html is HTML for rssd.

    feedparser-rs says text/html for every title, an Atom ``type="text"`` one too.
    feedparser calls an RSS title HTML when it looks like HTML (its own test: a close tag
    or an entity, and only harmless elements), and an Atom title when its type says so.
    RSS: feedparser's test, so both parsers agree. Atom: any markup or reference, so an
    HTML title with a ``<script>`` in it still loses it (rssd.fetch.entries strips the
    markup of HTML titles only)."""
    if atom:
        return _MARKUP.search(value) is not None
    return bool(_FeedParserMixin.looks_like_html(value))


def _title_detail(detail: Any, base: str, atom: bool) -> dict[str, Any] | None:
    """A title's detail with the type feedparser would give it (title_is_html)."""
    out = _detail(detail, base)
    if (
        out is not None
        and out["type"] == "text/html"
        and isinstance(out["value"], str)
        and not title_is_html(out["value"], atom)
    ):
        out["type"] = "text/plain"
    return out


def _feed(meta: Any, url: str, atom: bool) -> dict[str, Any]:
    feed: dict[str, Any] = {
        "title": _str(meta.title),
        "ttl": meta.ttl,
        # sy:updatePeriod / sy:updateFrequency (rssd.fetch.worker._asked_minutes)
        "sy_updateperiod": meta.get("sy_updateperiod"),
        "sy_updatefrequency": meta.get("sy_updatefrequency"),
    }
    detail = _title_detail(meta.title_detail, url, atom)
    if detail is not None:
        feed["title_detail"] = detail
    return feed


def _dates(entry: Any, atom: bool) -> dict[str, Any]:
    """``published`` and ``updated`` as feedparser names them. In RSS feedparser-rs copies
    ``pubDate`` into ``updated`` too, where feedparser has ``updated`` from ``dc:date``
    only (and ``published`` from ``pubDate``). A date feedparser-rs could not read is read
    by feedparser's own date parser, so both parsers agree on every format feedparser
    knows."""
    if atom:
        published, published_parsed = entry.published, entry.published_parsed
        updated, updated_parsed = entry.updated, entry.updated_parsed
    else:
        published, published_parsed = entry.published, entry.published_parsed
        updated = entry.get("dc_date")
        updated_parsed = entry.get("dc_date_parsed") if updated is not None else None
    published, updated = _str(published), _str(updated)
    return {
        "published": published,
        "published_parsed": published_parsed or _feedparser_date(published),
        "updated": updated,
        "updated_parsed": updated_parsed or _feedparser_date(updated),
    }


def _feedparser_date(text: str | None) -> Any:
    if not text:
        return None
    try:
        return _parse_date(text)
    except Exception:  # the reference's date parser on hostile text: no date
        return None


#: An absolute http(s) URL that feedparser's join returns unchanged: lowercase scheme, no
#: slash run after it, no blanks or controls (urllib strips or drops those), no ``;``
#: params, no brackets (an IPv6 host; urllib rejects a malformed one), and a query or
#: fragment only when not empty (urllib drops an empty one).
_PLAIN_URL = re.compile(
    r"https?://[^/?#;\[\]\s\x00-\x1f\x7f]+(?:/[^?#;\[\]\s\x00-\x1f\x7f]*)?"
    r"(?:\?[^#;\[\]\s\x00-\x1f\x7f]+)?(?:#[^\[\]\s\x00-\x1f\x7f]+)?"
)


def _resolve(base: str, uri: str) -> str:
    """feedparser's own URI join (it differs from urllib's on odd input); the common
    absolute URL skips it (a third of a 20,000-item feed's parse went there)."""
    if _PLAIN_URL.fullmatch(uri):
        return uri
    try:
        return str(_urljoin(base, uri))
    except ValueError:
        return uri


def _attribute(value: object) -> str | None:
    """An Atom attribute's value as feedparser gives it: feedparser-rs leaves references
    in them undecoded (``term``, ``href``), an XML parser decodes them."""
    text = _str(value)
    return _xml_unescape(text) if text and "&" in text else text


def _tags(tags: Any, atom: bool) -> list[dict[str, str | None]]:
    """Categories as feedparser's ``{"term", "label"}`` (rssd.fetch.entries.tags_json).
    An RSS ``<category>``'s term is element text, an Atom one's an attribute."""
    return [
        {
            "term": _attribute(tag.term) if atom else _str(tag.term),
            "label": _attribute(tag.label),
        }
        for tag in tags or ()
    ]


def _enclosures(enclosures: Any, base: str, atom: bool) -> list[dict[str, str | None]]:
    """Enclosures as feedparser's ``rel="enclosure"`` links: an Atom one's ``href``
    resolved against the entry's base, an RSS ``url`` as written (as feedparser does)."""
    links: list[dict[str, str | None]] = []
    read = _attribute if atom else _str  # RSS <enclosure> attributes come decoded
    for enclosure in enclosures or ():
        href = read(enclosure.href)
        if href and atom:
            href = _resolve(base, href)
        links.append(
            {
                "rel": "enclosure",
                "href": href,
                "type": read(enclosure.get("type")),
                "length": read(enclosure.get("length")),
            }
        )
    return links


def _entry(entry: Any, feed_base: str, atom: bool, guids: _Guids | None) -> dict[str, Any]:
    """One feedparser-rs Entry -> the dict feedparser would have given rssd: the same
    keys, links and ids resolved as feedparser resolves them (against an Atom entry's
    ``xml:base``, else the feed's URL; an RSS ``<guid>`` unless it is not a permalink)."""
    base = (_base(entry) if atom else None) or feed_base
    out: dict[str, Any] = {"author": _str(entry.author)}
    out.update(_dates(entry, atom))
    link = _str(entry.link)
    if link:
        if "&" in link:
            link = _xml_unescape(link) if atom else _repair_link(link)
        out["link"] = _resolve(base, link)
    external_id = _str(entry.id)
    if (
        external_id
        and ":" not in external_id  # relative: an absolute one stays as it is
        and (atom or (guids is not None and guids.permalink(external_id)))
    ):
        external_id = _resolve(base, external_id)
    out["id"] = external_id
    out["tags"] = _tags(entry.tags, atom)
    out["links"] = _enclosures(entry.enclosures, base, atom)
    title_detail = _title_detail(entry.title_detail, base, atom)
    if entry.title is not None:
        out["title"] = _str(entry.title)
        out["title_detail"] = title_detail
    if entry.summary is not None:
        out["summary"] = _str(entry.summary)
        out["summary_detail"] = _detail(entry.summary_detail, base)
    parts = entry.content
    if parts:
        out["content"] = [
            {"type": part.type, "base": base, "value": _str(part.value)} for part in parts
        ]
        detail = out.get("summary_detail")
        first = out["content"][0]
        if detail and (detail["type"], out["summary"]) == (first["type"], first["value"]):
            # A summary that is the content (feedparser-rs copies an Atom entry's content
            # there, as feedparser does): without its detail, rssd.fetch.sanitize reuses
            # the content's cleaned HTML instead of cleaning it again.
            del out["summary_detail"]
    return {key: value for key, value in out.items() if value is not None}
