"""How big one webhook message may get: pure functions, for every payload format.

A publisher chooses what a feed holds, and a small feed can make large bodies (600
relative links under a 2,000-character ``xml:base`` made 100 MB of webhook bodies from
a 1.8 MB feed: each POST outlived its timeout and was retried until dead). So a post in a
message is cut to ``MAX_POST_BYTES`` (its longest free-text fields first, each ending in
"…"), and a fetch's posts are split into messages by size as well as by count, so that
a body stays within ``MAX_MESSAGE_BYTES``. What sanitizing may add to a field is bounded
where it is done (rssd.fetch.sanitize).

Sizes are bytes of UTF-8 JSON as the outbox writes it (``ensure_ascii=False``, compact).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

#: One post, as it appears in a message (the Standard Webhooks body the outbox stores).
MAX_POST_BYTES = 128 * 1024
#: One message's whole body: a fetch's posts are split so each body stays below it.
MAX_MESSAGE_BYTES = 1024 * 1024
#: The feed's name in the envelope (a feed's own title is the publisher's text).
MAX_NAME_BYTES = 1024
ELLIPSIS = "…"

#: The fields of a post that may be cut, the largest first (HTML ones between tags).
_HTML_FIELDS = ("content", "summary")
_TEXT_FIELDS = ("title", "author")
_CUTTABLE = (*_HTML_FIELDS, *_TEXT_FIELDS, "tags", "enclosures", "url")


def json_size(value: object) -> int:
    """Bytes of ``value`` as the outbox writes JSON."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def clip_bytes(text: str, limit: int) -> str:
    """At most ``limit`` bytes of UTF-8, cut on a character; a shortened text ends with
    an ellipsis."""
    data = text.encode()
    if len(data) <= limit:
        return text
    cut = data[: max(0, limit - len(ELLIPSIS.encode()))].decode(errors="ignore")
    return cut.rstrip() + ELLIPSIS if cut.strip() else ""


def clip_html(markup: str, limit: int) -> str:
    """At most ``limit`` bytes of HTML, cut between tags and entities (a cut tag would
    swallow what follows it on the receiver's page); elements left open are closed by
    any HTML parser."""
    clipped = clip_bytes(markup, limit)
    if clipped == markup or not clipped:
        return clipped
    body = clipped.removesuffix(ELLIPSIS)
    if body.rfind("<") > body.rfind(">"):
        body = body[: body.rfind("<")]
    amp = body.rfind("&")
    if amp > body.rfind(";") and len(body) - amp <= 10:
        body = body[:amp]
    return body.rstrip() + ELLIPSIS if body.strip() else ""


def _shrink(
    fitted: dict[str, object], key: str, budget: int, clip: Callable[[str, int], str]
) -> None:
    """Cut ``fitted[key]`` (a string) until the whole post is at most ``budget`` bytes,
    or the field is gone (None)."""
    value = fitted[key]
    assert isinstance(value, str)
    limit = len(value.encode()) - (json_size(fitted) - budget)
    while True:
        clipped = clip(value, limit)
        fitted[key] = clipped or None
        excess = json_size(fitted) - budget
        if excess <= 0 or not clipped:
            return
        limit -= excess  # JSON escapes made it larger than its UTF-8: take that off too


def fit_post(payload: Mapping[str, object], budget: int = MAX_POST_BYTES) -> dict[str, object]:
    """``payload`` cut to at most ``budget`` bytes of JSON (``fit_post_sized``)."""
    return fit_post_sized(payload, budget)[0]


def fit_post_sized(
    payload: Mapping[str, object], budget: int = MAX_POST_BYTES
) -> tuple[dict[str, object], int]:
    """``payload`` (one post of a message) cut to at most ``budget`` bytes of JSON, its
    largest field first, as little as needed: content, summary, title or author
    shortened (ending in "…"), tags or enclosures dropped, a url dropped (a cut link
    leads nowhere); its external_id only as a last resort (beyond any real id's length).
    A post within the budget is returned as it is. With its size in bytes."""
    fitted = dict(payload)
    size = json_size(fitted)
    if size <= budget:
        return fitted, size
    present = [key for key in _CUTTABLE if key in fitted]
    candidates = sorted(present, key=lambda key: json_size(fitted[key]), reverse=True)
    for key in (*candidates, "external_id"):
        value = fitted.get(key)
        if json_size(fitted) <= budget:
            break
        if isinstance(value, list) and value:
            fitted[key] = []
        elif isinstance(value, str) and key in _HTML_FIELDS:
            _shrink(fitted, key, budget, clip_html)
        elif isinstance(value, str) and key == "url":
            fitted[key] = None  # a cut link leads nowhere
        elif isinstance(value, str):
            _shrink(fitted, key, budget, clip_bytes)
    return fitted, json_size(fitted)


def split_by_size(
    sizes: Sequence[int], max_count: int, max_bytes: int, overhead: int = 0
) -> list[range]:
    """Consecutive runs of items (by index) with at most ``max_count`` items and at most
    ``max_bytes`` bytes each: ``overhead`` (the envelope) plus the items' ``sizes`` and a
    separator between two. An item too large for any message goes alone. Order is kept."""
    runs: list[range] = []
    start, total = 0, overhead
    for index, size in enumerate(sizes):
        count = index - start
        if count and (count >= max_count or total + 1 + size > max_bytes):
            runs.append(range(start, index))
            start, total = index, overhead
        total += size + (1 if index > start else 0)
    if start < len(sizes):
        runs.append(range(start, len(sizes)))
    return runs
