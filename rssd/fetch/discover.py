"""Which feeds an HTML page offers: ``<link rel="alternate" type="...">`` in its markup.

People paste a blog's homepage, not its feed URL. A page names its feeds with
``<link rel="alternate" type="application/rss+xml" href="/blog.rss" title="...">``; hrefs
are relative to the page, or to its ``<base href>``. Pure functions: the scan runs in the
parse workers (a regex over the first 256 KB, microseconds; no HTML parser needed for
attributes of one element), the resolution in the main process against the URL the page
was really served from.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin, urlsplit

from msgspec import Struct

#: Feed types in the order a page's feeds are preferred: RSS, then Atom, then JSON Feed.
FEED_TYPES = {
    "application/rss+xml": ("RSS", 0),
    "application/rdf+xml": ("RSS", 0),
    "application/atom+xml": ("Atom", 1),
    "application/feed+json": ("JSON Feed", 2),
}
#: Where a page's <link> and <base> elements are: its head, in practice near the start.
SCAN_BYTES = 256 * 1024

_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_TAG = re.compile(r"<(link|base)\b([^>]*)>", re.IGNORECASE)
_ATTRIBUTE = re.compile(
    r"""([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))"""
)


class FeedLink(Struct, frozen=True):
    """One feed a page links to: ``href`` as written (relative or not) until resolved."""

    href: str
    type: str
    title: str | None = None

    @property
    def kind(self) -> str:
        """RSS, Atom or JSON Feed."""
        return FEED_TYPES[self.type][0]


class PageLinks(Struct, frozen=True):
    """What the scan of a page found: its ``<base href>`` and its feed links, in order."""

    base: str | None
    links: tuple[FeedLink, ...]


def _attributes(raw: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for match in _ATTRIBUTE.finditer(raw):
        name = match.group(1).lower()
        value = next((group for group in match.groups()[1:] if group is not None), "")
        found.setdefault(name, html.unescape(value).strip())
    return found


def scan_page(body: bytes) -> PageLinks:
    """The first ``<base href>`` and every ``<link rel="alternate">`` of a feed type."""
    text = _COMMENT.sub("", body[:SCAN_BYTES].decode("utf-8", "replace"))
    base: str | None = None
    links: list[FeedLink] = []
    for match in _TAG.finditer(text):
        attrs = _attributes(match.group(2))
        href = attrs.get("href")
        if not href:
            continue
        if match.group(1).lower() == "base":
            base = base or href
            continue
        kind = attrs.get("type", "").split(";")[0].strip().lower()
        rels = attrs.get("rel", "").lower().split()
        if "alternate" in rels and kind in FEED_TYPES:
            links.append(FeedLink(href, kind, " ".join(attrs.get("title", "").split()) or None))
    return PageLinks(base, tuple(links))


def resolve_links(page: PageLinks, page_url: str) -> tuple[FeedLink, ...]:
    """Absolute http(s) URLs, relative ones resolved against ``<base href>`` (itself
    resolved against the page), ordered RSS, Atom, JSON Feed, each in document order;
    the same URL listed twice counts once."""
    base = urljoin(page_url, page.base) if page.base else page_url
    seen: set[str] = set()
    resolved: list[FeedLink] = []
    for link in page.links:
        if not link.href.isprintable():
            continue  # control characters: no URL an operator wrote, and no request to make
        try:
            url = urljoin(base, link.href)
        except ValueError:
            continue
        if urlsplit(url).scheme.lower() not in ("http", "https") or url in seen:
            continue
        seen.add(url)
        resolved.append(FeedLink(url, link.type, link.title))
    return tuple(sorted(resolved, key=lambda link: FEED_TYPES[link.type][1]))
