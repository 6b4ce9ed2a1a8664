"""What a parse gives back (rssd.fetch.worker, rssd.fetch.parsing): its own module, so
that the worker's entry points and the parse stack both use it without importing each
other."""

from __future__ import annotations

from enum import StrEnum

from msgspec import Struct

from rssd.fetch.discover import PageLinks
from rssd.models.codes import ErrorCode
from rssd.models.post import PostCreate


class Parser(StrEnum):
    """Which parser read a document: the ``parser`` log field and metric label."""

    FEEDPARSER_RS = "feedparser_rs"
    FEEDPARSER = "feedparser"
    JSONFEED = "jsonfeed"


class ParseOutcome(Struct, frozen=True):
    """A parsed document, or why it could not be used (``error_code`` set, no posts)."""

    posts: tuple[PostCreate, ...] = ()
    error_code: ErrorCode | None = None
    message: str | None = None
    #: feedparser's complaint about a document it could still read ("bozo").
    warning: str | None = None
    version: str | None = None
    title: str | None = None
    #: RSS <ttl>, minutes: how long the publisher asks readers to wait.
    ttl_minutes: int | None = None
    #: The fingerprints of every item in the document (rssd.fetch.items), to store for the
    #: next parse; b"" when the document could not be cut into items.
    seen_items: bytes = b""
    #: Items not parsed because an earlier document had them, byte for byte.
    skipped: int = 0
    #: Every item was seen before: nothing was parsed.
    all_seen: bool = False
    #: An HTML page instead of a feed: the feeds it links to (rssd.fetch.discover).
    page: PageLinks | None = None
    #: The parser whose result this is (None: nothing was parsed).
    parser: Parser | None = None


class ParseTimeoutError(Exception):
    pass
