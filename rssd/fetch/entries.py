"""feedparser entries -> PostCreate: pure normalization, run inside the parse workers."""

from __future__ import annotations

import calendar
import email.utils
import hashlib
import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rssd.clock import to_iso
from rssd.fetch.text import MAX_FIELD_CHARS, html_to_text
from rssd.models.post import PostCreate
from rssd.models.search import document

# C0 controls except tab, newline and carriage return, DEL, and C1 controls: invisible,
# invalid in XML 1.0, and trouble for every consumer of the database.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

__all__ = ["MAX_FIELD_CHARS"]  # its home is rssd.fetch.text; re-exported for callers


def clean_text(value: object) -> str | None:
    """Strip control characters and surrounding blanks; empty becomes None."""
    if not isinstance(value, str):
        return None
    if not (value.isascii() and value.isprintable()):  # printable ASCII has no controls
        value = _CONTROL.sub("", value)
    value = value.strip()
    return value[:MAX_FIELD_CHARS] or None


def to_utc_iso(parsed: object) -> str | None:
    """feedparser's ``*_parsed`` struct_time (already UTC; no zone is taken as UTC) -> ISO.

    Missing or invalid dates (out of range, not a struct_time) become None.
    """
    if not isinstance(parsed, time.struct_time):
        return None
    try:
        return to_iso(datetime.fromtimestamp(calendar.timegm(parsed), UTC))
    except (OverflowError, ValueError, OSError):
        return None


def _own(entry: Mapping[str, Any], key: str) -> Any:
    """A key the entry really has. FeedParserDict.get falls back between keys
    (updated -> published) with a DeprecationWarning; dict.get does not."""
    return dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)


def parse_date_text(text: object) -> str | None:
    """Our own reading of a date feedparser gave up on: RFC 822 (with or without a weekday
    or a zone) or ISO 8601. No zone means UTC (README, "What is stored"); anything else is None."""
    if not isinstance(text, str) or not text.strip():
        return None
    text = text.strip()
    moment: datetime | None = None
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return to_iso(moment)
    except (OverflowError, ValueError):
        return None


def entry_date(entry: Mapping[str, Any], key: str) -> str | None:
    """``published``/``updated`` as ISO UTC: feedparser's parse, else ours of the raw text."""
    return to_utc_iso(_own(entry, f"{key}_parsed")) or parse_date_text(_own(entry, key))


def http_only(link: str | None) -> str | None:
    """The entry's link, if it is http(s). Anything else is no link to store: a
    ``javascript:`` or ``data:text/html`` link runs in whatever shows it, and feedparser
    copies an Atom id like ``tag:`` or ``urn:`` into ``link`` when there is none."""
    if link and not link.lower().startswith(("http://", "https://")):
        return None
    return link


def _content(entry: Mapping[str, Any]) -> str | None:
    """The entry's full content: prefer an HTML part, else the first part."""
    parts = _own(entry, "content") or []
    if not isinstance(parts, list) or not parts:
        return None
    html = [part for part in parts if "html" in str(part.get("type", ""))]
    chosen = (html or parts)[0]
    return clean_text(chosen.get("value"))


#: Markup or an entity reference in a field feedparser gives without a type (author names).
_MARKUP = re.compile(r"<[A-Za-z/!]|&(?:#\d|#x[0-9A-Fa-f]|[A-Za-z]+;)")


def title_text(entry: Mapping[str, Any]) -> str | None:
    """The title as plain text (rssd.fetch.text): an HTML title loses its markup and has
    its entities decoded; a text title is already text."""
    title = clean_text(_own(entry, "title"))
    detail = _own(entry, "title_detail")
    if title and isinstance(detail, Mapping) and "html" in str(detail.get("type") or ""):
        return clean_text(html_to_text(title))
    return title


def text_value(value: object) -> str | None:
    """A field that should be text (an author name) but may carry markup or entities."""
    text = clean_text(value)
    if text and _MARKUP.search(text):
        return clean_text(html_to_text(text))
    return text


#: Bounds on what an entry's lists may add to its row (a hostile feed's thousand tags).
MAX_TAGS = 50
MAX_ENCLOSURES = 20
MAX_TAG_CHARS = 200


def tags_json(values: object) -> str | None:
    """Category / tag names as a JSON array (feedparser's ``{"term", "label"}`` dicts, or
    plain strings from a JSON Feed), cleaned, unique, bounded; None when there are none."""
    names: list[str] = []
    for value in values if isinstance(values, list) else ():
        term = value.get("term") or value.get("label") if isinstance(value, Mapping) else value
        name = text_value(term)
        if name and name[:MAX_TAG_CHARS] not in names:
            names.append(name[:MAX_TAG_CHARS])
        if len(names) == MAX_TAGS:
            break
    return json.dumps(names, ensure_ascii=False) if names else None


def enclosures_json(values: object, url_key: str, type_key: str, length_key: str) -> str | None:
    """Enclosures / attachments as a JSON array of ``{"url", "type", "length"}`` (http(s)
    URLs only; a length that is not a whole number of bytes is null)."""
    found: list[dict[str, object]] = []
    for value in values if isinstance(values, list) else ():
        if not isinstance(value, Mapping):
            continue
        url = http_only(clean_text(value.get(url_key)))
        if url is None:
            continue
        length = value.get(length_key)
        if isinstance(length, str) and length.strip().isdigit():
            length = int(length.strip())
        found.append(
            {
                "url": url,
                "type": clean_text(value.get(type_key)),
                "length": length
                if isinstance(length, int) and not isinstance(length, bool) and length >= 0
                else None,
            }
        )
        if len(found) == MAX_ENCLOSURES:
            break
    return json.dumps(found, ensure_ascii=False) if found else None


def _enclosure_links(entry: Mapping[str, Any]) -> list[Any]:
    """feedparser keeps enclosures among the links (``enclosures`` is a computed key)."""
    links = _own(entry, "links")
    return [
        link
        for link in (links if isinstance(links, list) else ())
        if isinstance(link, Mapping) and link.get("rel") == "enclosure"
    ]


def content_hash(fields: Mapping[str, str | None]) -> str:
    """A stable hash of what a post shows; an edit anywhere changes it."""
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def entry_to_post(entry: Mapping[str, Any]) -> PostCreate:
    """One entry -> PostCreate. external_id: id/guid, else link (even one not stored as the
    url: it still names the entry), else a hash of the content.

    Title and author are plain text; summary and content stay (sanitized) HTML.
    """
    link = clean_text(_own(entry, "link"))
    fields = {
        "title": title_text(entry),
        "url": http_only(link),
        "author": text_value(_own(entry, "author")),
        "summary": clean_text(_own(entry, "summary")),
        "content": _content(entry),
        # Atom requires <updated> and makes <published> optional: an entry with only the
        # former was published then, as far as anyone can tell.
        "published_at": entry_date(entry, "published") or entry_date(entry, "updated"),
        "updated_at": entry_date(entry, "updated"),
    }
    digest = content_hash(fields)
    external_id = clean_text(_own(entry, "id")) or link or f"sha256:{digest}"
    # Not in the hash: posts stored before tags were kept do not all turn "edited".
    return PostCreate(
        external_id=external_id,
        content_hash=digest,
        tags=tags_json(_own(entry, "tags")),
        enclosures=enclosures_json(_enclosure_links(entry), "href", "type", "length"),
        search_doc=document(
            fields["title"], fields["summary"], fields["content"], fields["author"]
        ),
        **fields,
    )
