"""The parse stack the workers run (rssd.fetch.worker): feedparser-rs first, feedparser
where it cannot (rssd.fetch.native), nh3, the items of a changed feed cut out by bytes
(rssd.fetch.items), JSON Feed (rssd.fetch.jsonfeed), an HTML page's feed links
(rssd.fetch.discover). Kept apart from rssd.fetch.worker so that the daemon's own process,
which imports the worker's entry points to hand them to the pool, never loads it.
"""

from __future__ import annotations

import io
from typing import Any

import feedparser
from msgspec.structs import replace

from rssd.fetch.charrefs import repair_char_refs
from rssd.fetch.discover import PageLinks, scan_page
from rssd.fetch.entries import entry_to_post, title_text
from rssd.fetch.items import ItemSplit, id_digest, new_items, pack, split_items, unpack
from rssd.fetch.jsonfeed import looks_like_json, parse_json_feed
from rssd.fetch.native import NativeParse, parse_native
from rssd.fetch.outcome import ParseOutcome, Parser, ParseTimeoutError
from rssd.fetch.sanitize import sanitize_entry
from rssd.models.changes import dedupe_posts
from rssd.models.codes import ErrorCode

__all__ = ["looks_like_json", "parse_json", "parse_new", "repair_char_refs"]


def parse_json(body: bytes, url: str, sanitize: bool) -> ParseOutcome:
    """A JSON Feed, parsed whole: its items are not cut out by bytes (rssd.fetch.items
    scans for XML tags), and reading JSON costs little next to feedparser."""
    read = parse_json_feed(body, url, sanitize)
    if read.error_code is not None:
        return ParseOutcome(error_code=read.error_code, message=read.message)
    return ParseOutcome(
        posts=tuple(dedupe_posts(read.posts)),
        warning=read.warning,
        version=read.version,
        title=read.title,
        parser=Parser.JSONFEED,
    )


def parse_new(
    body: bytes,
    url: str,
    content_type: str | None,
    sanitize: bool,
    seen: bytes,
    *,
    native: bool = True,
) -> ParseOutcome:
    """Parse the items not in ``seen``; the whole document when cutting it is not safe."""
    split = split_items(body)
    if split is None:
        return _parse(body, url, content_type, sanitize, native)[0]
    stored = unpack(seen)
    if stored:
        part = new_items(body, split, stored)
        if not part.kept:
            records = {digest: stored[digest] for digest in split.digests}
            return ParseOutcome(seen_items=pack(records), skipped=part.skipped, all_seen=True)
        if part.skipped:
            outcome, ids = _parse(part.body, url, content_type, sanitize, native)
            if _cut_parse_holds(outcome, ids, part.kept, split, stored):
                new = dict(zip(part.kept, map(id_digest, ids), strict=True))
                records = {digest: stored.get(digest) or new[digest] for digest in split.digests}
                return replace(outcome, seen_items=pack(records), skipped=part.skipped)
    outcome, ids = _parse(body, url, content_type, sanitize, native)
    if outcome.error_code is not None or len(ids) != len(split.digests):
        return outcome  # items and entries do not pair up: nothing to remember
    records = dict(zip(split.digests, map(id_digest, ids), strict=True))
    return replace(outcome, seen_items=pack(records))


def _cut_parse_holds(
    outcome: ParseOutcome,
    ids: list[str],
    kept: tuple[bytes, ...],
    split: ItemSplit,
    stored: dict[bytes, bytes],
) -> bool:
    """Whether the cut document's parse stands for the whole's (rssd.fetch.items): it read
    cleanly as one entry per kept item, and no new item shares its id with a seen one in
    the same document (the whole parse would keep the first copy)."""
    if outcome.error_code is not None or outcome.warning is not None or len(ids) != len(kept):
        return False
    seen_ids = {stored[digest] for digest in split.digests if digest in stored}
    return not any(id_digest(external_id) in seen_ids for external_id in ids)


def _parse(
    body: bytes, url: str, content_type: str | None, sanitize: bool, native: bool = True
) -> tuple[ParseOutcome, list[str]]:
    """feedparser-rs, else feedparser, on ``body`` (rssd.fetch.native says when): the
    outcome, and each entry's external_id in document order (duplicates included)."""
    read = _native(body, url) if native else None
    version: str | None
    feed: Any
    entries: list[Any]
    bozo: object
    if read is not None:
        parser, version, feed, entries, bozo = (
            Parser.FEEDPARSER_RS,
            read.version,
            read.feed,
            read.entries,
            None,
        )
    else:
        parser = Parser.FEEDPARSER
        parsed = _feedparser(body, url, content_type)
        version = parsed.get("version") or None
        entries = parsed.get("entries") or []
        bozo = parsed.get("bozo_exception") if parsed.get("bozo") else None
        feed = parsed.get("feed") or {}
    for entry in entries:  # text escaped always; HTML cleaned if ``sanitize``
        sanitize_entry(entry, url, sanitize=sanitize)
    if not version and not entries:
        page = scan_page(body) if _is_html(body) else None
        outcome = ParseOutcome(
            error_code=ErrorCode.NOT_A_FEED,
            message=_not_a_feed_message(body, bozo, page),
            page=page,
        )
        return outcome, []
    if sanitize and isinstance(feed, dict):
        sanitize_entry(feed, url)  # an Atom title may be HTML too
    posts = [entry_to_post(entry) for entry in entries]
    outcome = ParseOutcome(
        posts=tuple(dedupe_posts(posts)),
        warning=_warning(bozo),
        version=version,
        title=title_text(feed) if isinstance(feed, dict) else None,
        ttl_minutes=_asked_minutes(feed) if isinstance(feed, dict) else None,
        parser=parser,
    )
    return outcome, [post.external_id for post in posts]


def _native(body: bytes, url: str) -> NativeParse | None:
    """feedparser-rs's reading, or None: feedparser reads the document instead when
    feedparser-rs cannot, and also when it (or the adapter) raises. The time limit's own
    exception goes through: swallowed, the fallback would run past the limit unbounded."""
    try:
        return parse_native(body, url)
    except (ParseTimeoutError, RecursionError):
        raise
    except Exception:
        return None


def _feedparser(body: bytes, url: str, content_type: str | None) -> Any:
    """feedparser's parse of ``body``, the fallback and the reference."""
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    # A file-like object, never bytes or str: given a string feedparser may open a local
    # file or URL of that name. feedparser's own sanitizer and URI resolver are off: nh3
    # does both, faster (rssd.fetch.sanitize).
    return feedparser.parse(
        io.BytesIO(body),
        response_headers=headers,
        sanitize_html=False,
        resolve_relative_uris=False,
    )


#: Complaints about the HTTP headers, not the document: servers label feeds text/html or
#: text/plain all the time, and a warning on every fetch of those would drown the logs.
_BENIGN = frozenset({"NonXMLContentType", "CharacterEncodingOverride"})


def _warning(bozo: object) -> str | None:
    if bozo is None or type(bozo).__name__ in _BENIGN:
        return None
    return f"{type(bozo).__name__}: {bozo}"[:500]


def _is_html(body: bytes) -> bool:
    return b"<html" in body[:65536].lower()


def _not_a_feed_message(body: bytes, bozo: object, page: PageLinks | None) -> str:
    if not body.strip():
        return "empty body"
    if page is not None:
        if page.links:
            return f"an HTML page, not a feed; it links to a feed at {page.links[0].href}"
        return 'an HTML page, not a feed, and it links to no feed (<link rel="alternate">)'
    reason = f" ({type(bozo).__name__}: {bozo})" if bozo else ""
    return f"not an RSS, Atom or JSON Feed document{reason}"[:500]


#: sy:updatePeriod (RSS 1.0's syndication module) in minutes.
_SY_PERIODS = {"hourly": 60, "daily": 1440, "weekly": 10080, "monthly": 43200, "yearly": 525600}


def _asked_minutes(feed: dict[str, object]) -> int | None:
    """How long the document asks readers to wait: RSS <ttl>, or sy:updatePeriod divided
    by sy:updateFrequency (default 1), whichever is longer."""
    asked = [minutes for minutes in (_ttl(feed.get("ttl")), _syndication(feed)) if minutes]
    return max(asked) if asked else None


def _syndication(feed: dict[str, object]) -> int | None:
    period = _SY_PERIODS.get(str(feed.get("sy_updateperiod", "")).strip().lower())
    if period is None:
        return None
    frequency = _ttl(feed.get("sy_updatefrequency", 1)) or 1
    return max(1, period // frequency)


def _ttl(value: object) -> int | None:
    try:
        minutes = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return minutes if minutes > 0 else None
