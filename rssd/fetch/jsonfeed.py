"""JSON Feed 1.0 and 1.1 (jsonfeed.org) -> PostCreate, in the parse workers.

feedparser reads XML only, and a JSON Feed is small and regular enough to read with the
standard library: the document is one JSON object with a ``version`` URL and an ``items``
array. Items map onto posts as RSS/Atom entries do (rssd.fetch.entries): ``id`` (else
``url``, else a hash of the content), ``url`` (else ``external_url``), ``title`` (text),
``content_html`` (sanitized HTML, else ``content_text`` HTML-escaped), ``summary`` (text,
escaped: the column holds HTML), ``date_published`` (else ``date_modified``),
``date_modified``, ``authors`` (1.1) or ``author`` (1.0). ``tags``, ``attachments``,
images and extensions are read past, like RSS categories and enclosures.

A document that is not JSON, or JSON without a jsonfeed.org version, is ``not_a_feed``; a
JSON Feed that is not valid JSON is ``parse_error``. An item of the wrong shape is skipped
and named in the warning; the other items are stored. A lone surrogate escape
(``"\\ud800"``: valid JSON, but no character, and nothing can encode it) is replaced by
U+FFFD, as invalid UTF-8 is, rather than failing the item or the feed.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

from msgspec import Struct

from rssd.fetch.entries import (
    clean_text,
    content_hash,
    enclosures_json,
    http_only,
    parse_date_text,
    tags_json,
    text_value,
)
from rssd.fetch.sanitize import clean_html
from rssd.models.codes import ErrorCode
from rssd.models.post import PostCreate
from rssd.models.search import document

VERSIONS = {
    "https://jsonfeed.org/version/1": "json1",
    "https://jsonfeed.org/version/1.1": "json11",
}
_MARK = b"jsonfeed.org/version"
#: A surrogate code point left alone: json decodes a valid escaped pair into one character.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: The escape that can produce one (raw surrogates never survive UTF-8 decoding).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class JsonFeed(Struct, frozen=True):
    """A read JSON Feed, or why it could not be read (``error_code`` set)."""

    posts: tuple[PostCreate, ...] = ()
    version: str | None = None
    title: str | None = None
    warning: str | None = None
    error_code: ErrorCode | None = None
    message: str | None = None


def looks_like_json(body: bytes, content_type: str | None) -> bool:
    """A JSON document rather than XML: it opens with ``{``, or the server says JSON and
    it does not open with ``<`` (servers label feeds wrongly all the time)."""
    head = body[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return True
    declared = "json" in (content_type or "").lower()
    return declared and bool(head) and not head.startswith(b"<")


def parse_json_feed(body: bytes, base: str, sanitize: bool) -> JsonFeed:
    """``body`` as a JSON Feed; relative item URLs resolve against ``base``."""
    warnings: list[str] = []
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        text = body.decode("utf-8", "replace")
        warnings.append(f"invalid UTF-8 at byte {exc.start}, replaced")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        if _MARK in body[:4096]:
            return JsonFeed(
                error_code=ErrorCode.PARSE_ERROR,
                message=f"malformed JSON Feed: {exc.msg} at {where}",
            )
        return JsonFeed(
            error_code=ErrorCode.NOT_A_FEED,
            message=f"not a feed: not valid JSON ({exc.msg} at {where})",
        )
    if _SURROGATE_ESCAPE.search(text) and _replace_surrogates(document):
        warnings.append("lone surrogate escapes replaced by U+FFFD")
    version = _version(document)
    if version is None:
        return JsonFeed(
            error_code=ErrorCode.NOT_A_FEED,
            message='JSON, but not a JSON Feed (no "version": "https://jsonfeed.org/version/1.1")',
        )
    assert isinstance(document, dict)
    items = document.get("items")
    if not isinstance(items, list):
        warnings.append('no "items" array')
        items = []
    posts: list[PostCreate] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            warnings.append(f"item {index} is not an object, skipped")
            continue
        posts.append(item_to_post(item, base, sanitize))
    warning = "; ".join(warnings)[:500] or None
    title = text_value(document.get("title"))
    return JsonFeed(tuple(posts), version, title, warning)


def _replace_surrogates(document: object) -> bool:
    """Replace every lone surrogate in the strings (keys too) of a decoded ``document``,
    in place; whether there was one. Iterative: the document may be as deep as json
    allows."""
    found = False

    def fixed(text: str) -> str:
        nonlocal found
        if _SURROGATE.search(text) is None:
            return text
        found = True
        return _SURROGATE.sub("\ufffd", text)

    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for index, value in enumerate(node):
                if isinstance(value, str):
                    node[index] = fixed(value)
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, dict):
            pairs = [(fixed(k), fixed(v) if isinstance(v, str) else v) for k, v in node.items()]
            node.clear()
            node.update(pairs)
            stack.extend(value for _, value in pairs if isinstance(value, dict | list))
    return found


def _version(document: object) -> str | None:
    if not isinstance(document, dict):
        return None
    declared = document.get("version")
    if not isinstance(declared, str):
        return None
    url = declared.strip().rstrip("/").replace("http://", "https://", 1)
    if url in VERSIONS:
        return VERSIONS[url]
    if url.startswith("https://jsonfeed.org/version/"):
        return "json"  # a later version: read as 1.1, which it must stay compatible with
    return None


def _string(item: Mapping[str, Any], key: str) -> str | None:
    return clean_text(item.get(key))


def _link(item: Mapping[str, Any], key: str, base: str) -> str | None:
    value = _string(item, key)
    if value is None:
        return None
    try:
        return urljoin(base, value)
    except ValueError:
        return value


def _authors(item: Mapping[str, Any]) -> str | None:
    """1.1's ``authors`` array, else 1.0's ``author`` object: the names, comma-separated."""
    found = item.get("authors")
    people = found if isinstance(found, list) else [item.get("author")]
    names = [
        name
        for person in people
        if isinstance(person, dict) and (name := text_value(person.get("name")))
    ]
    return ", ".join(names) or None


def _content(item: Mapping[str, Any], base: str, sanitize: bool) -> str | None:
    markup = _string(item, "content_html")
    if markup is not None:
        return clean_text(clean_html(markup, base)) if sanitize else markup
    plain = _string(item, "content_text")
    return html.escape(plain, quote=False) if plain is not None else None


def item_to_post(item: Mapping[str, Any], base: str, sanitize: bool) -> PostCreate:
    """One item -> PostCreate (the same hashing and id rules as an RSS/Atom entry)."""
    summary = _string(item, "summary")
    published = parse_date_text(item.get("date_published"))
    modified = parse_date_text(item.get("date_modified"))
    # Only an http(s) link is stored as the post's url (a javascript: or data: link runs
    # in whatever shows it); any link still names the item.
    link = _link(item, "url", base) or _link(item, "external_url", base)
    fields = {
        "title": text_value(item.get("title")),
        "url": http_only(link),
        "author": _authors(item),
        "summary": html.escape(summary, quote=False) if summary is not None else None,
        "content": _content(item, base, sanitize),
        "published_at": published or modified,
        "updated_at": modified,
    }
    digest = content_hash(fields)
    raw_id = item.get("id")
    if isinstance(raw_id, int | float) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)  # 1.0 feeds in the wild number their items
    external_id = clean_text(raw_id) or link or f"sha256:{digest}"
    return PostCreate(
        external_id=external_id,
        content_hash=digest,
        tags=tags_json(item.get("tags")),
        enclosures=enclosures_json(item.get("attachments"), "url", "mime_type", "size_in_bytes"),
        search_doc=document(
            fields["title"], fields["summary"], fields["content"], fields["author"]
        ),
        **fields,
    )
