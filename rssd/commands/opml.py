"""OPML, the subscription-list format every feed reader exports: read it safely, write 2.0.

Reading uses the standard library's ElementTree, which expands entities declared in a DTD
(the "billion laughs" blow-up). No subscription list needs a DTD, so any document that
declares one, or an entity, is refused before it is parsed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from email.utils import format_datetime

from msgspec import Struct

from rssd.commands.terminal import strip_unsafe
from rssd.models.config import FeedConfig, check_http_url, normalize_url
from rssd.models.redact import redact

MAX_OPML_BYTES = 20 * 1024 * 1024
#: Enclosing outline titles kept as a feed's category path, and characters per title:
#: with no cap, 20,000 nested outlines made 20,000 ever-longer paths (quadratic; issue 14
#: measured 3.5 GB).
MAX_CATEGORY_DEPTH = 8
MAX_TITLE_CHARS = 200
_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_BOMLESS = (
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
    (b"\x00<\x00?", "utf-16-be"),
    (b"<\x00?\x00", "utf-16-le"),
)
_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_FORBIDDEN = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class OpmlError(Exception):
    """The file is not a usable OPML document; the message says why and where."""


class OpmlFeed(Struct, frozen=True):
    url: str
    title: str | None
    category: tuple[str, ...] = ()  # the titles of the outlines it is nested in
    enabled: bool = True  # rssd's own attribute, enabled="false" (OPML allows extras)

    @property
    def category_name(self) -> str | None:
        """The folders as config.toml's ``category``: "Blogs / Linux"."""
        folders = [" ".join(part.replace("/", " ").split()) for part in self.category]
        return " / ".join(folder for folder in folders if folder) or None


class Rejected(Struct, frozen=True):
    url: str
    reason: str


class OpmlFeeds(Struct, frozen=True):
    feeds: tuple[OpmlFeed, ...]  # usable and unique, in document order
    rejected: tuple[Rejected, ...]  # outlines with an xmlUrl that cannot be a feed


def sniff_encoding(data: bytes) -> str:
    """The encoding, as an XML parser would see it (XML 1.0 appendix F): a BOM; else the
    byte pattern of ``<?`` in UTF-16 or UTF-32 without a BOM; else the declaration's
    encoding; else UTF-8. Sniffing the BOM-less forms matters: read as UTF-8 they pass
    for text with NULs in it, and the DTD check would look at the wrong characters."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return codec
    for pattern, codec in _BOMLESS:
        if data.startswith(pattern):
            return codec
    match = _ENCODING.match(data)
    return match.group(1).decode("ascii") if match else "utf-8"


def decode(data: bytes) -> str:
    """The document as text, in the encoding :func:`sniff_encoding` finds."""
    encoding = sniff_encoding(data)
    try:
        text = data.decode(encoding)
    except LookupError:
        raise OpmlError(f"unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        raise OpmlError(f"not valid {encoding} text at byte {exc.start}") from None
    if "\x00" in text:
        raise OpmlError(f"a NUL character at character {text.index(chr(0))}: not XML")
    return text.removeprefix("\ufeff")


def parse(data: bytes) -> OpmlFeeds:
    """Every feed outline (``xmlUrl``), nested ones included, validated and de-duplicated."""
    if len(data) > MAX_OPML_BYTES:
        raise OpmlError(f"larger than {MAX_OPML_BYTES // (1024 * 1024)} MB: not a feed list")
    text = decode(data)
    if _FORBIDDEN.search(text):
        raise OpmlError("declares a DTD or entities (<!DOCTYPE/<!ENTITY): refused")
    try:
        # The checked text, as UTF-8 bytes saying so: expat parses exactly what was
        # checked, never its own reading of the original bytes.
        document = _DECLARATION.sub("", text, count=1)
        root = ET.fromstring(b'<?xml version="1.0" encoding="utf-8"?>' + document.encode())
    except ET.ParseError as exc:
        raise OpmlError(f"not well-formed XML: {exc}") from None
    if _local(root.tag) != "opml":
        raise OpmlError(f"not OPML: the root element is <{_local(root.tag)}>, not <opml>")
    body = next((child for child in root if _local(child.tag) == "body"), None)
    if body is None:
        raise OpmlError("not OPML: no <body> element")
    return _collect(_outlines(body))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _outlines(body: ET.Element) -> Iterable[tuple[dict[str, str], tuple[str, ...]]]:
    """(attributes with lower-cased names, titles of the enclosing outlines), in document
    order. Iterative: a hostile file nested thousands deep must not hit the recursion limit;
    paths stop growing at MAX_CATEGORY_DEPTH, so the work per outline is bounded.
    """
    stack: list[tuple[ET.Element, tuple[str, ...]]] = [
        (child, ()) for child in reversed(_children(body))
    ]
    while stack:
        element, path = stack.pop()
        attrs = {_local(key): value for key, value in element.attrib.items()}
        yield attrs, path
        title = _title(attrs)
        inner = (*path, title) if title and len(path) < MAX_CATEGORY_DEPTH else path
        stack.extend((child, inner) for child in reversed(_children(element)))


def _children(element: ET.Element) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == "outline"]


def _title(attrs: dict[str, str]) -> str | None:
    for key in ("title", "text"):
        value = " ".join(strip_unsafe(attrs.get(key, "")).split())
        if value:
            return value[:MAX_TITLE_CHARS]
    return None


def feed_url(raw: str) -> str:
    """The http(s) URL an ``xmlUrl`` means: ``feed://host/x`` and ``feed:https://...`` are
    old browser-style spellings of http(s)."""
    url = raw.strip()
    lowered = url.lower()
    if lowered.startswith("feed:http://") or lowered.startswith("feed:https://"):
        url = url[len("feed:") :]
    elif lowered.startswith("feed://"):
        url = "http://" + url[len("feed://") :]
    return check_http_url(url)


def _collect(outlines: Iterable[tuple[dict[str, str], tuple[str, ...]]]) -> OpmlFeeds:
    feeds: list[OpmlFeed] = []
    rejected: list[Rejected] = []
    seen: set[str] = set()
    for attrs, path in outlines:
        raw = attrs.get("xmlurl", "").strip()
        if not raw:
            continue  # a category, or a plain link
        try:
            url = feed_url(raw)
        except ValueError as exc:
            rejected.append(Rejected(raw, str(exc)))
            continue
        key = normalize_url(url)
        if key in seen:
            continue
        seen.add(key)
        title = _title(attrs)
        enabled = attrs.get("enabled", "").strip().lower() != "false"
        feeds.append(OpmlFeed(url, None if title == url else title, path, enabled))
    return OpmlFeeds(tuple(feeds), tuple(rejected))


def render(
    feeds: Sequence[FeedConfig],
    now: datetime,
    title: str = "rssd feeds",
    feed_titles: Mapping[str, str] | None = None,
    feed_urls: Mapping[str, str] | None = None,
) -> str:
    """OPML 2.0: one ``type="rss"`` outline per feed (text and title: its name, else the
    feed's own title from ``feed_titles`` by URL, else the URL), inside nested outlines
    for its category's folders; ``enabled="false"`` on a disabled feed. A configured web
    page whose feed is known (``feed_urls``: page URL -> feed URL) is exported as that
    feed (``xmlUrl``) with the page as ``htmlUrl``: ``xmlUrl`` must be a feed. Credentials
    in a URL are masked: an OPML file is shared.

    Control and format characters are left out of the text: C0 controls are not XML at
    all, and C1 or bidi characters would reach whatever reader displays the file.
    """
    opml = ET.Element("opml", version="2.0")
    head = ET.SubElement(opml, "head")
    ET.SubElement(head, "title").text = title
    ET.SubElement(head, "dateCreated").text = format_datetime(now, usegmt=True)
    ET.SubElement(head, "docs").text = "https://opml.org/spec2.opml"
    body = ET.SubElement(opml, "body")
    folders: dict[tuple[str, ...], ET.Element] = {(): body}
    for feed in feeds:
        path = tuple(feed.category.split(" / ")) if feed.category else ()
        for depth in range(1, len(path) + 1):
            if path[:depth] not in folders:
                name = strip_unsafe(path[depth - 1])
                folders[path[:depth]] = ET.SubElement(
                    folders[path[: depth - 1]], "outline", text=name, title=name
                )
        url = redact(feed.url)
        label = strip_unsafe(feed.name or (feed_titles or {}).get(feed.url) or url)
        attributes = {"type": "rss", "text": label, "title": label, "xmlUrl": url}
        discovered = (feed_urls or {}).get(feed.url)
        if discovered:
            attributes.update(xmlUrl=strip_unsafe(redact(discovered)), htmlUrl=url)
        if not feed.enabled:
            attributes["enabled"] = "false"
        ET.SubElement(folders[path], "outline", attributes)
    ET.indent(opml, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(opml, encoding="unicode")
