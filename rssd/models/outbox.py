"""What a fetch announces, to whom: pure functions from new posts and subscribers to
webhook messages (their ids and exact bodies). No I/O; the repo writes the result in the
transaction that stores the posts.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache

from msgspec import Struct

from rssd.models.filters import Filters, passes
from rssd.models.post import PostCreate
from rssd.models.sizes import (
    MAX_MESSAGE_BYTES,
    MAX_NAME_BYTES,
    clip_bytes,
    fit_post,
    fit_post_sized,
    json_size,
    split_by_size,
)

#: Above this many posts, a fetch's announcement to one user is split into several messages.
MAX_POSTS_PER_MESSAGE = 100
#: Per format: as many posts as one request of that service can carry whole (Slack: 50
#: blocks; Discord: 10 embeds in 6,000 characters; ntfy: 4,096 bytes). A longer list is
#: split across messages, never cut.
POSTS_PER_MESSAGE = {"standard": MAX_POSTS_PER_MESSAGE, "slack": 20, "discord": 10, "ntfy": 10,
                     "gotify": 20}  # fmt: skip
EVENT_TYPE = "posts.new"

_sequence = itertools.count()


def new_message_id(now_ms: int | None = None) -> str:
    """``msg_`` + time (ms, hex) + a process sequence + randomness: unique, and sorted by
    creation time, so ordering by id sends a user's messages oldest first."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    return f"msg_{ms:012x}{next(_sequence) % 0x10000:04x}{os.urandom(5).hex()}"


class Subscriber(Struct, frozen=True):
    """A subscription that announces this fetch: the user and their filters (rule texts)."""

    user_id: int
    name: str
    keep: tuple[str, ...] = ()
    block: tuple[str, ...] = ()
    format: str = "standard"
    include_content: bool = False
    #: Skip a story announced from another feed within this many days (0: never).
    dedupe_days: int = 0
    #: A digest user's posts wait for the period's message (rssd/models/digests.py).
    digest: str | None = None


class Feed(Struct, frozen=True):
    id: int
    url: str
    name: str | None  # the configured name, else the feed's own title
    category: str | None = None


class StoredPost(Struct, frozen=True):
    """A post as stored: its row id, and its fields."""

    id: int
    post: PostCreate


class Message(Struct, frozen=True):
    id: str
    user_id: int
    posts_count: int
    body: str


@lru_cache(maxsize=1024)
def filters_of(keep: tuple[str, ...], block: tuple[str, ...]) -> Filters:
    """Compiled once per distinct rule set (the rules were validated with the config)."""
    return Filters.parse(keep, block)


def post_fields(post: PostCreate, feed: Feed) -> dict[str, str | None]:
    """What a filter rule can match: the post's fields and its feed's category."""
    return {**post.as_row(), "category": feed.category}


def chosen_posts(
    subscriber: Subscriber, feed: Feed, posts: Sequence[StoredPost]
) -> list[StoredPost]:
    """The posts that pass the subscriber's filters."""
    filters = filters_of(subscriber.keep, subscriber.block)
    return [p for p in posts if passes(filters, post_fields(p.post, feed))]


def plan_messages(
    subscribers: Sequence[Subscriber],
    feed: Feed,
    posts: Sequence[StoredPost],
    timestamp: str,
    chunk: int | None = None,
    *,
    filtered: bool = False,
    made: dict[tuple[int, bool], tuple[dict[str, object], int]] | None = None,
) -> list[Message]:
    """One message per subscriber with the posts that pass the subscriber's filters, split
    above ``chunk`` posts (by default as many as the subscriber's format carries) and
    above ``MAX_MESSAGE_BYTES`` (rssd.models.sizes), each post cut to ``MAX_POST_BYTES``;
    none for a subscriber whose filters pass nothing. ``filtered``: ``posts`` passed them.
    ``made``: the posts' payloads and sizes by (post id, include_content), shared by the
    calls for one fetch's subscribers, so each post is made and measured once."""
    made = {} if made is None else made
    messages = []
    for subscriber in subscribers:
        chosen = list(posts) if filtered else chosen_posts(subscriber, feed, posts)
        if not chosen:
            continue
        count = chunk or POSTS_PER_MESSAGE.get(subscriber.format, MAX_POSTS_PER_MESSAGE)
        sized = []
        for stored in chosen:
            key = (stored.id, subscriber.include_content)
            if key not in made:
                made[key] = fit_post_sized(post_payload(stored, feed, key[1]))
            sized.append(made[key])
        payloads = [payload for payload, _ in sized]
        sizes = [size for _, size in sized]
        envelope = json_size(envelope_of(subscriber.name, feed, [], timestamp))
        for run in split_by_size(sizes, count, MAX_MESSAGE_BYTES, envelope):
            part = payloads[run.start : run.stop]
            body = _dump(envelope_of(subscriber.name, feed, part, timestamp))
            messages.append(Message(new_message_id(), subscriber.user_id, len(part), body))
    return messages


def post_payload(stored: StoredPost, feed: Feed, include_content: bool) -> dict[str, object]:
    """One post of a message; ``include_content`` adds what a receiver that keeps the
    posts needs (content, tags, enclosures, updated_at, the feed's category)."""
    post = stored.post
    payload: dict[str, object] = {
        "id": stored.id,
        "external_id": post.external_id,
        "title": post.title,
        "url": post.url,
        "author": post.author,
        "published_at": post.published_at,
        "summary": post.summary,
    }
    if include_content:
        payload["content"] = post.content
        payload["updated_at"] = post.updated_at
        payload["tags"] = json.loads(post.tags) if post.tags else []
        payload["enclosures"] = json.loads(post.enclosures) if post.enclosures else []
        payload["category"] = feed.category
    return payload


def envelope_of(
    user: str, feed: Feed, payloads: Sequence[Mapping[str, object]], timestamp: str
) -> dict[str, object]:
    """The Standard Webhooks payload around posts already made (``post_payload``, cut to
    size by ``fit_post``); ``timestamp`` is when the posts were stored. The feed's name
    may be its own title, so it is bounded too."""
    name = clip_bytes(feed.name, MAX_NAME_BYTES) if feed.name else feed.name
    return {
        "type": EVENT_TYPE,
        "timestamp": timestamp,
        "data": {
            "user": user,
            "feed": {"id": feed.id, "url": feed.url, "name": name},
            "posts": list(payloads),
        },
    }


def message_body(
    user: str,
    feed: Feed,
    posts: Sequence[StoredPost],
    timestamp: str,
    include_content: bool = False,
) -> str:
    """The body of one message carrying ``posts`` (each cut to ``MAX_POST_BYTES``)."""
    payloads = [fit_post(post_payload(stored, feed, include_content)) for stored in posts]
    return _dump(envelope_of(user, feed, payloads, timestamp))


def _dump(document: Mapping[str, object]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
