"""One notification per story: the keys that say two posts are the same story, and which
of a fetch's posts a user has already been told about. Pure; the outbox acts on it.

A story is known by its post's normalized link and by its guid. The link is compared
without what differs between a page and its feed, or between two aggregators linking the
same article: scheme (http/https), a leading ``www.``, the default port, the fragment, a
trailing slash, tracking parameters (``utm_*``, ``fbclid``...), the order of the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

from msgspec import Struct

#: Query parameters that track the click, not name the page.
TRACKING = frozenset({"fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "igshid",
                      "ref_src", "ref_url"})  # fmt: skip
DEFAULT_PORTS = {"http": 80, "https": 443}


def link_key(url: str | None) -> str | None:
    """``link:`` + the link in its compared form; None for no (or no http) link."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().removeprefix("www.")
    if scheme not in DEFAULT_PORTS or not host:
        return None
    if port is not None and port not in DEFAULT_PORTS.values():
        host = f"{host}:{port}"
    query = sorted(
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not key.lower().startswith("utm_") and key.lower() not in TRACKING
    )
    path = parts.path.rstrip("/") or "/"
    return f"link:{host}{path}" + (f"?{urlencode(query)}" if query else "")


def story_keys(external_id: str, url: str | None) -> tuple[str, ...]:
    """Every key of a post: its link's and its guid's."""
    link = link_key(url)
    guid = f"guid:{external_id}"
    return (link, guid) if link else (guid,)


class Skip(Struct, frozen=True):
    """A post not announced: ``duplicate_of`` (a post of another feed) told the story."""

    post_id: int
    story: str
    duplicate_of: int


def duplicates(posts: Iterable[tuple[int, tuple[str, ...]]], told: Mapping[str, int]) -> list[Skip]:
    """The posts (id, keys) one of whose keys names a story in ``told`` (key -> the post
    that announced it), in the posts' order."""
    skips = []
    for post_id, keys in posts:
        story = next((key for key in keys if key in told), None)
        if story is not None:
            skips.append(Skip(post_id, story, told[story]))
    return skips
