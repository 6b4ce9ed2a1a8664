"""Each format's payload, built from the same stored message, against the shape and the
limits its service documents; the services' error answers read by the retry rules."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from rssd.models.config import Config, ConfigError, config_of
from rssd.models.outbox import POSTS_PER_MESSAGE, Feed, StoredPost, Subscriber, plan_messages
from rssd.models.post import PostCreate
from rssd.models.users import ServiceToken
from rssd.webhooks.formats import (
    DISCORD_TOTAL_CHARS,
    NTFY_MESSAGE_BYTES,
    SLACK_SECTION_CHARS,
    discord_chars,
    probe_body,
    render,
    with_token,
)
from rssd.webhooks.rules import Answer, DisableReason, Outcome, decide, read_answer

FEED = Feed(7, "https://blog.example/feed", "Blog", "Tech")
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def post(n: int, **fields: Any) -> StoredPost:
    values: dict[str, Any] = {
        "external_id": f"guid-{n}",
        "title": f"Post {n}",
        "url": f"https://blog.example/{n}",
        "author": "Ann",
        "summary": f"Summary {n}",
        "published_at": "2026-12-04T10:00:00.000Z",
        "content_hash": f"h{n}",
        **fields,
    }
    return StoredPost(n, PostCreate(**values))


def body(posts: list[StoredPost], fmt: str = "standard") -> str:
    messages = plan_messages([Subscriber(1, "alice", format=fmt)], FEED, posts, "T", chunk=1000)
    assert len(messages) == 1
    return messages[0].body


def payload(fmt: str, posts: list[StoredPost], url: str = "https://hook.example/x") -> Any:
    return json.loads(render(fmt, url, body(posts, fmt)).body)


@pytest.mark.parametrize(
    ("fmt", "url", "token", "expected"),
    [
        (
            "slack",
            "https://hooks.slack.com/services/T1/B2",
            "x/y",
            "https://hooks.slack.com/services/T1/B2/x%2Fy",
        ),
        (
            "discord",
            "https://discord.com/api/webhooks/42/",
            "tok",
            "https://discord.com/api/webhooks/42/tok",
        ),
        (
            "discord",
            "https://discord.com/api/webhooks/42/tok",
            None,
            "https://discord.com/api/webhooks/42/tok",
        ),
        ("gotify", "https://push.example", "tok", "https://push.example"),  # a header there
    ],
)
def test_a_url_token_kept_apart_is_appended(
    fmt: str, url: str, token: str | None, expected: str
) -> None:
    assert with_token(fmt, url, token) == expected


@pytest.mark.parametrize(
    ("fmt", "url", "secret"),
    [
        ("slack", "https://hooks.slack.com/services/T1/B2/s3cret", "s3cret"),
        ("discord", "https://discord.com/api/webhooks/42/s3cret", "s3cret"),
        ("gotify", "https://push.example/message?token=s3cret", "s3cret"),
        ("gotify", "https://push.example?token=s3cret", "s3cret"),
        ("discord", "https://discord.example?token=s3cret", "s3cret"),
        ("standard", "https://alice:s3cret@hook.example/x", "s3cret"),
    ],
)
def test_a_requests_repr_shows_no_token(fmt: str, url: str, secret: str) -> None:
    """A traceback's locals or a debugging print of the request a sender makes: its host,
    never the token in its URL."""
    request = render(fmt, url, body([post(1)]))
    assert secret in request.url
    assert secret not in repr(request), repr(request)
    assert str(urlsplit(url).hostname) in repr(request)


def test_standard_is_the_stored_body_itself() -> None:
    stored = body([post(1)])
    request = render("standard", "https://hook.example/x", stored)
    assert request.url == "https://hook.example/x"
    assert request.body == stored.encode()


def test_slack_blocks_and_text() -> None:
    shape = payload("slack", [post(1), post(2, url=None)])
    assert shape["text"].splitlines() == [
        "*<https://blog.example/feed|Blog>*",
        "• <https://blog.example/1|Post 1>",
        "• Post 2",
    ]
    assert shape["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "2 new posts in Blog"},
    }
    assert shape["blocks"][2] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "*<https://blog.example/1|Post 1>*\nAnn\nSummary 1"},
    }


def test_slack_escapes_markup_a_feed_could_use_to_ping_everyone() -> None:
    shape = payload("slack", [post(1, title="<!channel> & <https://evil.example|x>")])
    assert "<!channel>" not in json.dumps(shape)
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|x&gt;" in shape["text"]


def test_slack_keeps_its_limits_at_a_full_message_of_long_posts() -> None:
    size = POSTS_PER_MESSAGE["slack"]
    long_link = "https://blog.example/" + "x" * 5000
    posts = [post(n, title="T" * 5000, summary="S" * 9000, url=long_link) for n in range(size)]
    shape = payload("slack", posts)
    assert len(shape["blocks"]) <= 50
    assert all(len(b["text"]["text"]) <= SLACK_SECTION_CHARS for b in shape["blocks"])
    assert shape["blocks"][0]["text"]["text"] == f"{size} new posts in Blog"
    assert len(shape["text"]) <= 40_000


def test_discord_embeds() -> None:
    shape = payload("discord", [post(1), post(2, url="javascript:alert(1)", author=None)])
    assert shape["content"] == "2 new posts in Blog"
    assert shape["allowed_mentions"] == {"parse": []}
    assert shape["embeds"] == [
        {
            "title": "Post 1",
            "url": "https://blog.example/1",
            "description": "Summary 1",
            "author": {"name": "Ann"},
            "timestamp": "2026-12-04T10:00:00.000Z",
        },
        {"title": "Post 2", "description": "Summary 2", "timestamp": "2026-12-04T10:00:00.000Z"},
    ]


def test_discord_keeps_its_limits_at_a_full_message_of_long_posts() -> None:
    size = POSTS_PER_MESSAGE["discord"]
    shape = payload(
        "discord",
        [post(n, title="T" * 900, summary="S" * 9000, author="A" * 999) for n in range(size)],
    )
    assert len(shape["embeds"]) == size <= 10
    long_link = payload("discord", [post(1, url="https://blog.example/" + "x" * 5000)])
    assert "url" not in long_link["embeds"][0]  # too long to be a link; the post stays
    assert all(len(e["title"]) <= 256 and len(e["description"]) <= 4096 for e in shape["embeds"])
    assert discord_chars(shape) <= DISCORD_TOTAL_CHARS
    assert shape["embeds"][0]["title"].endswith("…")


def test_ntfy_publishes_json_to_the_servers_root() -> None:
    stored = body([post(1)], "ntfy")
    request = render("ntfy", "https://ntfy.example/base/news-4f2a", stored)
    assert request.url == "https://ntfy.example/base/"
    assert json.loads(request.body) == {
        "topic": "news-4f2a",
        "tags": ["newspaper"],
        "title": "Post 1",
        "message": "Summary 1\nBlog",
        "click": "https://blog.example/1",
    }
    several = payload("ntfy", [post(1), post(2)], "https://ntfy.sh/t")
    assert several["title"] == "2 new posts in Blog"
    assert several["message"] == "• Post 1\n• Post 2"
    assert several["click"] == "https://blog.example/feed"


def test_ntfy_stays_under_its_message_size_at_a_full_message() -> None:
    size = POSTS_PER_MESSAGE["ntfy"]
    shape = payload("ntfy", [post(n, title="🦆" * 2000) for n in range(size)], "https://ntfy.sh/t")
    assert len(shape["message"].encode()) <= NTFY_MESSAGE_BYTES
    assert shape["message"].count("•") == size  # every post listed, each title shortened


def test_gotify_message_with_markdown_and_a_click_url() -> None:
    stored = body([post(1, title="a_b [c]")], "gotify")
    request = render("gotify", "https://push.example/", stored)
    assert request.url == "https://push.example/message"
    assert json.loads(request.body) == {
        "title": "1 new post in Blog",
        "message": "- [a\\_b \\[c\\]](https://blog.example/1)",
        "priority": 5,
        "extras": {
            "client::display": {"contentType": "text/markdown"},
            "client::notification": {"click": {"url": "https://blog.example/1"}},
        },
    }
    assert render("gotify", "https://push.example/message", stored).url == request.url


@pytest.mark.parametrize("fmt", ["slack", "discord", "ntfy", "gotify"])
def test_the_test_message_in_every_format(fmt: str) -> None:
    text = json.dumps(json.loads(render(fmt, "https://h.example/t", probe_body("bob", "T")).body))
    assert "Test message from rssd for user bob" in text


@pytest.mark.parametrize("fmt", ["slack", "discord", "ntfy", "gotify"])
def test_a_message_planned_for_another_format_says_what_it_leaves_out(fmt: str) -> None:
    """A user who switches from standard to a chat format with messages pending."""
    stored = body([post(n) for n in range(30)])  # one standard message of 30
    shape = json.loads(render(fmt, "https://h.example/t", stored).body)
    size = POSTS_PER_MESSAGE[fmt]
    text = json.dumps(shape, ensure_ascii=False)
    assert f"30 new posts in Blog ({30 - size} not listed here: rssd posts shows them)" in text
    assert {int(n) for n in re.findall(r"Post (\d+)", text)} == set(range(size))


@pytest.mark.parametrize("fmt", sorted(POSTS_PER_MESSAGE))
def test_a_long_list_is_split_across_messages_never_cut(fmt: str) -> None:
    size = POSTS_PER_MESSAGE[fmt]
    posts = [post(n) for n in range(2 * size + 3)]
    messages = plan_messages([Subscriber(1, "alice", format=fmt)], FEED, posts, "T")
    assert [m.posts_count for m in messages] == [size, size, 3]
    ids = [p["id"] for m in messages for p in json.loads(m.body)["data"]["posts"]]
    assert ids == [p.id for p in posts]


def test_include_content_adds_what_a_receiver_keeping_posts_needs() -> None:
    stored = post(
        1,
        content="<p>Body</p>",
        updated_at="2026-12-04T11:00:00.000Z",
        tags='["linux"]',
        enclosures='[{"url": "https://blog.example/a.mp3", "type": "audio/mpeg", "length": 5}]',
    )
    plain = json.loads(body([stored]))["data"]["posts"][0]
    assert "content" not in plain
    full = plan_messages([Subscriber(1, "a", include_content=True)], FEED, [stored], "T")
    extra = {
        k: v for k, v in json.loads(full[0].body)["data"]["posts"][0].items() if k not in plain
    }
    assert extra == {
        "content": "<p>Body</p>",
        "updated_at": "2026-12-04T11:00:00.000Z",
        "tags": ["linux"],
        "enclosures": [{"url": "https://blog.example/a.mp3", "type": "audio/mpeg", "length": 5}],
        "category": "Tech",
    }


# What services answer, as the rules read it.


@pytest.mark.parametrize(
    ("fmt", "status", "header", "reply", "expected"),
    [
        ("discord", 204, None, b"", Answer(204)),
        (
            "discord",
            429,
            None,
            b'{"message": "You are being rate limited.", "retry_after": 2.5, "global": false}',
            Answer(429, None, "3", False, "You are being rate limited."),
        ),
        (
            "discord",
            429,
            "7",
            b'{"message": "slow down", "retry_after": 2.5}',
            Answer(429, None, "7", False, "slow down"),
        ),
        (
            "discord",
            404,
            None,
            b'{"message": "Unknown Webhook", "code": 10015}',
            Answer(404, None, None, True, "Unknown Webhook"),
        ),
        ("slack", 404, None, b"no_service", Answer(404, None, None, True, "no_service")),
        (
            "slack",
            410,
            None,
            b"channel_is_archived",
            Answer(410, None, None, True, "channel_is_archived"),
        ),
        ("slack", 400, None, b"invalid_payload", Answer(400, None, None, False, "invalid_payload")),
        ("slack", 404, None, b"<html>\x1b[31m", Answer(404)),
        (
            "ntfy",
            429,
            None,
            b'{"code":42901,"http":429,"error":"limit reached: too many requests"}',
            Answer(429, None, None, False, "limit reached: too many requests"),
        ),
        (
            "gotify",
            401,
            None,
            b'{"error":"Unauthorized","errorCode":401,"errorDescription":"bad token"}',
            Answer(401, None, None, False, "Unauthorized"),
        ),
        ("standard", 404, None, b"no_service", Answer(404)),
    ],
)
def test_read_answer(
    fmt: str, status: int, header: str | None, reply: bytes, expected: Answer
) -> None:
    assert read_answer(fmt, status, header, reply) == expected


def test_discords_retry_after_in_the_body_sets_the_next_attempt() -> None:
    answer = read_answer("discord", 429, None, b'{"retry_after": 42}')
    decision = decide(answer, 1, retry_seconds=(5,), now=NOW, failing_since=None, jitter=0.5)
    assert decision.outcome is Outcome.RETRY
    assert decision.next_attempt_at == NOW + timedelta(seconds=42)


def test_slacks_no_service_disables_the_endpoint_as_gone() -> None:
    answer = read_answer("slack", 404, None, b"no_service")
    decision = decide(answer, 1, retry_seconds=(5,), now=NOW, failing_since=None, jitter=0.5)
    assert decision.disable is DisableReason.GONE
    assert decision.error == "HTTP 404: no_service"


# The config: which formats take which secret.

TOKEN = "AbCdEf.123-xyz"


def config(tmp_path: Path, **user: Any) -> Config:
    return config_of(
        {
            "database": str(tmp_path / "db.sqlite3"),
            "feeds": [{"url": "https://blog.example/feed"}],
            "users": [{"name": "alice", "feeds": ["*"], **user}],
        },
        tmp_path / "config.toml",  # relative secret files: beside it
        {},
    )


def test_a_gotify_token_from_a_file_is_never_shown(tmp_path: Path) -> None:
    (tmp_path / "gotify.token").write_text(TOKEN + "\n")
    cfg = config(
        tmp_path, webhook_url="https://push.example", format="gotify", secret_file="gotify.token"
    )
    user = cfg.users[0]
    assert isinstance(user.token, ServiceToken) and user.token.text() == TOKEN
    assert TOKEN not in repr(cfg) + str(cfg) + repr(user.token) + str(user.token)


@pytest.mark.parametrize(
    ("user", "error"),
    [
        (
            {"format": "gotify"},
            "set exactly one of 'secret' and 'secret_file' (the application token)",
        ),
        ({"format": "ntfy", "webhook_url": "https://ntfy.sh/"}, "needs the topic's URL"),
        ({"format": "gotify", "secret": "has space"}, "a token must be printable ASCII"),
        (
            {"format": "slack", "include_content": True},
            "include_content applies to format 'standard'",
        ),
        ({"format": "teams"}, "Input should be 'standard', 'slack'"),
    ],
)
def test_format_errors(tmp_path: Path, user: dict[str, Any], error: str) -> None:
    settings = {"webhook_url": "https://hook.example/x", **user}
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, **settings)
    messages = " ".join(caught.value.errors)
    assert error in messages
    assert "has space" not in messages


def test_ntfy_without_a_token_and_slack_without_a_secret_are_valid(tmp_path: Path) -> None:
    assert config(tmp_path, webhook_url="https://ntfy.sh/t", format="ntfy").users[0].token is None
    assert config(tmp_path, webhook_url="https://hooks.slack.example/s", format="slack").users
