"""The body fingerprint that decides whether a 200 needs parsing at all.

Many feeds change on every request while their entries do not: a build timestamp, a
``<lastBuildDate>``, a rotating ad in the channel. Hashing the whole body would parse those
feeds every time (issue #5, "timestamp churn"). So the fingerprint covers the bytes from
the first entry's start tag to the last entry's end tag (``<item>``/``<entry>``, with or
without a namespace prefix); a document in which no entry is found is fingerprinted whole.
The scan is a byte search, not a parse: it only has to be deterministic, since any change
in an entry's bytes changes the fingerprint.
"""

from __future__ import annotations

import hashlib
import re

ENTRY_START = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(?:item|entry)[\s>/]")
ENTRY_END = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?(?:item|entry)\s*>")


def entries_span(body: bytes) -> tuple[int, int] | None:
    """Byte offsets of the entries region, or None when the body has no entries."""
    start = ENTRY_START.search(body)
    if start is None:
        return None
    last = _last_end_tag(body, start.start())
    if last is None:
        return None
    return start.start(), last


def _last_end_tag(body: bytes, start: int) -> int | None:
    """The end offset of the last entry end tag at or after ``start``, looking back from
    the end of the body: a feed ends with a few closing tags after its last entry, so
    this reads a few bytes where scanning forward read every entry, on the event loop."""
    before = len(body)
    while (tag := body.rfind(b"</", start, before)) >= 0:
        match = ENTRY_END.match(body, tag)
        if match is not None:
            return match.end()
        before = tag
    return None


def content_digest(body: bytes) -> str:
    """SHA-256 of the entries region, or of the whole body when it has no entries.

    A JSON document (a JSON Feed) is hashed whole: ``<item>`` inside an HTML string of it
    says nothing about where its items are.
    """
    if body[:64].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return hashlib.sha256(body).hexdigest()
    span = entries_span(body)
    if span is None:
        return hashlib.sha256(body).hexdigest()
    return "e:" + hashlib.sha256(memoryview(body)[span[0] : span[1]]).hexdigest()
