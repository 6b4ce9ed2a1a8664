"""Digest periods and digest messages (pure), and the config keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rssd.models.config import Config, ConfigError, config_of
from rssd.models.digests import Waiting, due, parse_schedule, plan_digest
from rssd.models.outbox import POSTS_PER_MESSAGE, Feed, StoredPost
from rssd.models.post import PostCreate
from rssd.models.sizes import MAX_MESSAGE_BYTES
from rssd.webhooks.formats import notice_of, render


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("spec", "zone", "moment", "end"),
    [
        ("1h", None, "2026-12-04T10:20:00+00:00", "2026-12-04T11:00:00+00:00"),
        (
            "1h",
            None,
            "2026-12-04T11:00:00+00:00",
            "2026-12-04T12:00:00+00:00",
        ),  # a boundary starts one
        ("30m", None, "2026-12-04T10:20:00+00:00", "2026-12-04T10:30:00+00:00"),
        ("1d", None, "2026-12-04T23:59:59+00:00", "2026-12-05T00:00:00+00:00"),
        ("08:00", None, "2026-12-04T07:59:00+00:00", "2026-12-04T08:00:00+00:00"),
        ("08:00", None, "2026-12-04T08:00:00+00:00", "2026-12-05T08:00:00+00:00"),
        ("08:00", "Europe/Berlin", "2026-12-04T06:00:00+00:00", "2026-12-04T07:00:00+00:00"),
        (
            "08:00",
            "Europe/Berlin",
            "2026-07-04T06:30:00+00:00",
            "2026-07-05T06:00:00+00:00",
        ),  # CEST
        # The night clocks go forward (2027-03-28 in Berlin): 08:00 local is 06:00 UTC.
        ("08:00", "Europe/Berlin", "2027-03-27T07:30:00+00:00", "2027-03-28T06:00:00+00:00"),
    ],
)
def test_period_end(spec: str, zone: str | None, moment: str, end: str) -> None:
    assert parse_schedule(spec, zone).period_end(at(moment)) == at(end)


@pytest.mark.parametrize(
    ("spec", "zone", "error"),
    [
        ("1w", None, "digest '1w': a period such as \"1h\""),
        ("0h", None, "a period such as"),
        ("8d", None, "at most 7 days"),
        ("24:00", None, "a time of day"),
        ("08:00", "Mars/Olympus", "timezone 'Mars/Olympus': not a known IANA name"),
    ],
)
def test_bad_schedules(spec: str, zone: str | None, error: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_schedule(spec, zone)
    assert error in str(caught.value)


FEEDS = [Feed(1, "https://a.example/feed", "A"), Feed(2, "https://b.example/feed", "B")]
T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def waiting(n: int, feed: Feed, minutes: int = 0) -> Waiting:
    post = PostCreate(
        external_id=f"g{n}", title=f"T{n}", url=f"https://x.example/{n}", content_hash=f"h{n}"
    )
    return Waiting(feed, StoredPost(n, post), T0 + timedelta(minutes=minutes))


def test_due_takes_the_closed_periods_only() -> None:
    items = [waiting(1, FEEDS[0], 5), waiting(2, FEEDS[0], 70)]
    hourly = parse_schedule("1h")
    assert due(items, hourly, T0 + timedelta(minutes=59)) == []
    assert due(items, hourly, T0 + timedelta(minutes=60)) == items[:1]
    assert due(items, hourly, T0 + timedelta(hours=5)) == items  # periods missed: one digest
    assert due(items, None, T0) == items  # no digest any more: out now


def test_a_digest_groups_by_feed_and_splits_beyond_a_message() -> None:
    items = [waiting(1, FEEDS[0]), waiting(2, FEEDS[1]), waiting(3, FEEDS[0])]
    ((message, first_feed),) = plan_digest(7, "alice", "standard", items, timestamp="T")
    assert (message.user_id, message.posts_count, first_feed) == (7, 3, 1)
    body = json.loads(message.body)
    assert body["type"] == "posts.digest"
    assert [(f["name"], [p["id"] for p in f["posts"]]) for f in body["data"]["feeds"]] == [
        ("A", [1, 3]),
        ("B", [2]),
    ]
    size = POSTS_PER_MESSAGE["discord"]
    many = [waiting(n, FEEDS[n % 2]) for n in range(size + 4)]
    parts = plan_digest(7, "alice", "discord", many, timestamp="T")
    assert [m.posts_count for m, _ in parts] == [size, 4]
    ids = [
        p["id"] for m, _ in parts for f in json.loads(m.body)["data"]["feeds"] for p in f["posts"]
    ]
    assert sorted(ids) == list(range(size + 4))  # every post, none twice


def test_a_digest_in_each_format_lists_every_feed() -> None:
    items = [waiting(1, FEEDS[0]), waiting(2, FEEDS[1])]
    ((message, _),) = plan_digest(7, "alice", "slack", items, timestamp="T")
    assert [g.name for g in notice_of(message.body).groups] == ["A", "B"]
    slack = json.loads(render("slack", "https://h.example/x", message.body).body)
    assert slack["blocks"][0]["text"]["text"] == "2 new posts in 2 feeds"
    gotify = json.loads(render("gotify", "https://h.example", message.body).body)
    assert (
        gotify["message"]
        == "**A**\n- [T1](https://x.example/1)\n**B**\n- [T2](https://x.example/2)"
    )


def config(tmp_path: Path, **user: Any) -> Config:
    return config_of(
        {
            "database": str(tmp_path / "db.sqlite3"),
            "feeds": [{"url": "https://a.example/feed"}],
            "users": [
                {
                    "name": "alice",
                    "webhook_url": "https://h.example/x",
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "feeds": ["*"],
                    **user,
                }
            ],
        }
    )


def test_digest_config(tmp_path: Path) -> None:
    user = config(tmp_path, digest="08:00", timezone="Europe/Berlin").users[0]
    assert (user.digest, user.timezone) == ("08:00", "Europe/Berlin")
    for settings, error in (
        ({"digest": "hourly"}, "a period such as"),
        ({"timezone": "Europe/Berlin"}, "timezone applies to a time-of-day digest"),
        ({"digest": "08:00", "timezone": "Nowhere/City"}, "not a known IANA name"),
    ):
        with pytest.raises(ConfigError) as caught:
            config(tmp_path, **settings)
        assert error in str(caught.value)


def test_a_digest_stays_within_the_message_byte_cap() -> None:
    big = [
        Waiting(
            FEEDS[n % 2],
            StoredPost(n, PostCreate(external_id=f"g{n}", content="x" * 120_000, content_hash="h")),
            T0,
        )
        for n in range(20)
    ]
    parts = plan_digest(7, "alice", "standard", big, timestamp="T", include_content=True)
    assert len(parts) > 1
    assert all(len(m.body.encode()) <= MAX_MESSAGE_BYTES for m, _ in parts)
    assert sum(m.posts_count for m, _ in parts) == 20
