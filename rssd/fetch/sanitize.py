"""Sanitizing stored HTML with nh3 (the Rust ammonia library), not feedparser's sanitizer.

feedparser's sanitizer and relative-URI resolver re-parse every HTML field in pure Python:
on the bench farm's feeds (50 items of ~0.9 KB HTML) they were more than half of the parse
(RSS 88 -> 43 ms, Atom 113 -> 58 ms per feed with feedparser's own two turned off and nh3
doing both; issue #5). So the parse workers run feedparser with both off and pass each HTML
field through :func:`clean_html`, which drops what a browser would execute (``<script>``,
``<style>`` and their content, ``on*`` handlers, ``javascript:`` and ``data:`` URLs (but
raster images inline in ``<img src>``),
``<iframe>``, ``<object>``, forms) and resolves relative ``href``/``src`` against the
field's base (its ``xml:base``, else the feed's URL), as feedparser did.

The allowlist is ammonia's default (text markup, lists, tables, images, links) plus the
media elements feeds carry (``<audio>``, ``<video>``, ``<source>``, ``<picture>``,
``<track>``). ``class`` and ``style`` are dropped: they only make sense on the publisher's
own pages. No ``rel`` is added to links: stored HTML stays as close to the feed's as is safe.

``summary`` and ``content`` are HTML columns whatever the feed said: a text field (Atom
``type="text"``) is escaped into HTML, never stored as if it were markup.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache
from typing import Any

import nh3

from rssd.fetch.text import MAX_FIELD_CHARS

_MEDIA: dict[str, set[str]] = {
    "audio": {"src", "controls", "loop", "muted", "preload"},
    "video": {"src", "controls", "loop", "muted", "preload", "poster", "width", "height"},
    "source": {"src", "type", "media"},
    "track": {"src", "kind", "label", "srclang", "default"},
    "picture": set(),
}
TAGS = frozenset(nh3.ALLOWED_TAGS | set(_MEDIA))
ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()},
    **_MEDIA,
    "img": {*nh3.ALLOWED_ATTRIBUTES["img"], "title"},
    "a": {*nh3.ALLOWED_ATTRIBUTES["a"], "title"},
    "*": {"lang", "dir", "title"},
}


#: Inline images feeds really carry (a base64 photo, a formula); SVG can hold scripts.
_DATA_IMAGE = re.compile(r"data:image/(?:png|jpeg|gif|webp|avif);", re.IGNORECASE)


def _only_data_images(tag: str, attribute: str, value: str) -> str | None:
    """With ``data:`` allowed, keep it only as an ``<img src>`` of a raster image."""
    if value[:5].lower() != "data:":
        return value
    return value if (tag, attribute) == ("img", "src") and _DATA_IMAGE.match(value) else None


@lru_cache(maxsize=64)
def _cleaner(base: str | None, data_images: bool = False) -> nh3.Cleaner:
    """One Cleaner per base URL (a feed has one or two): building one per post costs.

    ``data_images``: the variant that lets ``<img src="data:image/png;...">`` through. Its
    attribute callback costs a call into Python per attribute, so it only serves fields
    that contain ``data:`` at all.
    """
    options: dict[str, Any] = {"tags": set(TAGS), "attributes": ATTRIBUTES, "link_rel": None}
    if data_images:
        options["url_schemes"] = {*nh3.ALLOWED_URL_SCHEMES, "data"}
        options["attribute_filter"] = _only_data_images
    if base:
        try:
            return nh3.Cleaner(**options, url_relative=("rewrite_with_base", base))
        except ValueError:  # not an absolute URL: relative links are kept as they are
            pass
    return nh3.Cleaner(**options)


#: What resolving relative URLs may make of a field: ``GROWTH_FACTOR`` times its length,
#: plus ``GROWTH_ALLOWANCE`` characters (a short field with one long link). A publisher's
#: 2,000-character ``xml:base`` under 600 relative links per summary turned a 1.8 MB feed
#: into 100 MB of posts and webhook bodies.
GROWTH_FACTOR = 3
GROWTH_ALLOWANCE = 4096


def clean_html(value: str, base: str | None) -> str:
    """``value`` with everything executable removed and relative URLs resolved on ``base``.

    Resolving is bounded: when it would make the field more than ``GROWTH_FACTOR`` times
    longer (plus ``GROWTH_ALLOWANCE``), relative URLs are left as the publisher wrote
    them. (Escaping ``<``, ``&`` and quotes adds at most 5 characters per character, and
    every field is capped at 1,000,000 characters after this.)

    Only the first MAX_FIELD_CHARS characters are cleaned (the stored field is cut there
    anyway): nh3's memory grows with the markup it is given, and a 10 MB field must not
    take a worker past the daemon's memory bound. A tag cut in half at the end is dropped
    by the HTML parser, never stored open."""
    value = value[:MAX_FIELD_CHARS]
    data_images = "data:" in value
    cleaned = _cleaner(base, data_images).clean(value)
    if base and len(cleaned) > GROWTH_FACTOR * len(value) + GROWTH_ALLOWANCE:
        return _cleaner(None, data_images).clean(value)
    return cleaned


def _is_html(detail: object) -> bool:
    if not isinstance(detail, dict):
        return False
    # text/html, application/xhtml+xml; anything else (text/plain) is text.
    return "html" in str(detail.get("type") or "")


def text_to_html(value: str) -> str:
    """Plain text as the HTML that shows it: ``<script>`` in an Atom ``type="text"``
    summary is words about a script, and must stay words in an HTML column."""
    return html.escape(value, quote=False)


def _as_html(value: str, detail: object, base: str | None, sanitize: bool) -> str:
    """One field of an HTML column: text is escaped; HTML (or a field that does not say
    what it is) is cleaned, unless the operator turned cleaning off."""
    if isinstance(detail, dict) and not _is_html(detail):
        return text_to_html(value)
    if not sanitize:
        return value
    base = (detail.get("base") if isinstance(detail, dict) else None) or base
    return clean_html(value, base)


def sanitize_entry(entry: dict[str, Any], base: str | None, *, sanitize: bool = True) -> None:
    """Make an entry's HTML columns HTML, in place: the summary and the content parts are
    escaped when they are text and cleaned when they are HTML (``sanitize``: the operator's
    ``sanitize_html``). The title is cleaned when it is HTML and left as text otherwise.

    An Atom entry without a summary gets feedparser's copy of its first content part
    (with no ``summary_detail``): that copy becomes what the part became.
    """
    if sanitize:
        title = dict.get(entry, "title")
        detail = dict.get(entry, "title_detail")
        if isinstance(title, str) and _is_html(detail):
            assert isinstance(detail, dict)
            entry["title"] = clean_html(title, detail.get("base") or base)
    parts = dict.get(entry, "content")
    converted: dict[str, str] = {}
    if isinstance(parts, list):
        for part in parts:
            raw = part.get("value") if isinstance(part, dict) else None
            if isinstance(raw, str):
                part["value"] = converted[raw] = _as_html(raw, part, base, sanitize)
    summary = dict.get(entry, "summary")
    if not isinstance(summary, str):
        return
    detail = dict.get(entry, "summary_detail")
    if detail is None and summary in converted:
        entry["summary"] = converted[summary]
    else:
        entry["summary"] = _as_html(summary, detail, base, sanitize)
