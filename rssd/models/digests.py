"""Digests: when a user's period closes, and the messages that list its posts. Pure.

``digest = "1h"`` (or ``"30m"``, ``"1d"``, any whole number of minutes, hours or days):
periods aligned on the epoch in UTC, so every daemon agrees on them; ``"08:00"``: a
period that closes every day at that time in the user's ``timezone`` (default UTC). A
post waits in its period; when the period closes, everything waiting for the user goes
into one digest (a daemon stopped over several periods sends one digest for them all),
split across messages above what one message of the user's format carries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from msgspec import Struct

from rssd.models.outbox import (
    MAX_POSTS_PER_MESSAGE,
    POSTS_PER_MESSAGE,
    Feed,
    Message,
    StoredPost,
    new_message_id,
    post_payload,
)
from rssd.models.sizes import (
    MAX_MESSAGE_BYTES,
    MAX_NAME_BYTES,
    clip_bytes,
    fit_post,
    json_size,
    split_by_size,
)

DIGEST_TYPE = "posts.digest"
_DURATION = re.compile(r"^([1-9][0-9]{0,4})([mhd])$")
_TIME_OF_DAY = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Schedule(Struct, frozen=True):
    """A parsed ``digest``: every ``every`` (aligned on the epoch), or daily ``at``."""

    every: timedelta | None = None
    at: time | None = None
    zone: str = "UTC"

    def period_end(self, moment: datetime) -> datetime:
        """The end of the period ``moment`` falls in (a moment on a boundary starts one)."""
        if self.every is not None:
            step = int(self.every.total_seconds())
            seconds = int((moment - EPOCH).total_seconds())
            return EPOCH + timedelta(seconds=(seconds // step + 1) * step)
        assert self.at is not None
        zone = ZoneInfo(self.zone)
        local = moment.astimezone(zone)
        close = datetime.combine(local.date(), self.at, tzinfo=zone)
        if close <= local:
            close = datetime.combine(local.date() + timedelta(days=1), self.at, tzinfo=zone)
        return close.astimezone(UTC)


def parse_schedule(spec: str, zone: str | None = None) -> Schedule:
    """``"1h"``, ``"1d"``, ``"30m"`` or ``"HH:MM"`` (with a timezone name, default UTC)."""
    if zone is not None:
        check_zone(zone)
    if match := _DURATION.match(spec):
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        if seconds > 7 * 86400:
            raise ValueError(f"digest {spec!r}: at most 7 days")
        return Schedule(every=timedelta(seconds=seconds))
    if match := _TIME_OF_DAY.match(spec):
        return Schedule(at=time(int(match.group(1)), int(match.group(2))), zone=zone or "UTC")
    raise ValueError(
        f'digest {spec!r}: a period such as "1h", "1d" or "30m", or a time of day such as "08:00"'
    )


def check_zone(zone: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"timezone {zone!r}: not a known IANA name such as Europe/Berlin"
        ) from None
    return zone


class Waiting(Struct, frozen=True):
    """A post waiting for its user's digest."""

    feed: Feed
    post: StoredPost
    queued_at: datetime


def due(waiting: Sequence[Waiting], schedule: Schedule | None, now: datetime) -> list[Waiting]:
    """The waiting posts whose period has closed by ``now``; all of them when the user has
    no digest any more (their entry changed: they go out now)."""
    if schedule is None:
        return list(waiting)
    return [w for w in waiting if schedule.period_end(w.queued_at) <= now]


def plan_digest(
    user_id: int,
    user: str,
    fmt: str,
    posts: Sequence[Waiting],
    *,
    timestamp: str,
    include_content: bool = False,
) -> list[tuple[Message, int]]:
    """The digest's messages, each with its first feed's id (the outbox row's feed): posts
    grouped by feed (feeds in order of first post), split as any message is: at most as
    many posts as the user's format carries, and within ``MAX_MESSAGE_BYTES`` (each post
    cut to ``MAX_POST_BYTES``, each feed's heading counted with its first post)."""
    count = POSTS_PER_MESSAGE.get(fmt, MAX_POSTS_PER_MESSAGE)
    order: dict[int, list[Waiting]] = {}
    for item in posts:
        order.setdefault(item.feed.id, []).append(item)
    flat = [item for items in order.values() for item in items]
    payloads = [fit_post(post_payload(w.post, w.feed, include_content)) for w in flat]
    sizes = [json_size(payload) for payload in payloads]
    for index, item in enumerate(flat):
        if index == 0 or flat[index - 1].feed.id != item.feed.id:
            sizes[index] += json_size(_heading(item.feed))
    envelope = json_size(_digest(user, [], timestamp))
    messages = []
    for run in split_by_size(sizes, count, MAX_MESSAGE_BYTES, envelope):
        groups: dict[int, tuple[Feed, list[dict[str, object]]]] = {}
        for index in run:
            feed = flat[index].feed
            groups.setdefault(feed.id, (feed, []))[1].append(payloads[index])
        feeds = [{**_heading(feed), "posts": part} for feed, part in groups.values()]
        body = json.dumps(
            _digest(user, feeds, timestamp),
            ensure_ascii=False,
            separators=(",", ":"),
        )
        first = flat[run.start].feed.id
        messages.append((Message(new_message_id(), user_id, len(run), body), first))
    return messages


def _heading(feed: Feed) -> dict[str, object]:
    name = clip_bytes(feed.name, MAX_NAME_BYTES) if feed.name else feed.name
    return {"id": feed.id, "url": feed.url, "name": name}


def _digest(user: str, feeds: list[dict[str, object]], timestamp: str) -> dict[str, object]:
    return {"type": DIGEST_TYPE, "timestamp": timestamp, "data": {"user": user, "feeds": feeds}}
