"""Every format end to end, with the daemon as a subprocess and one loopback stand-in per
service: the exact request the service documents (URL, auth, body), its own way of
saying "later" obeyed, and its own way of saying "gone" disabling the endpoint."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import FeedServer
from tests.support.commands import cli, dated_rss
from tests.support.loopback import serve
from tests.support.process import Daemons

pytestmark = pytest.mark.slow

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TOKENS = {
    "slack": "SLACKTOKEN",
    "discord": "discord-token",
    "ntfy": "tk_ntfy",
    "gotify": "GotifyApp1",
}


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Services:
    """One server standing in for the four services; ``phase`` picks their answers."""

    port: int = 0
    hits: dict[str, list[Hit]] = field(default_factory=dict)
    phase: str = "later-then-ok"
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def service(self, path: str) -> str:
        return "ntfy" if path == "/" else path.split("/")[1]

    async def handle(self, request: web.Request) -> web.Response:
        name = self.service(request.path)
        hits = self.hits.setdefault(name, [])
        hits.append(Hit(request.path, dict(request.headers), json.loads(await request.read())))
        self.changed.set()
        if self.phase == "gone":
            return {
                "slack": web.Response(status=404, text="no_service"),
                "discord": web.json_response(
                    {"message": "Unknown Webhook", "code": 10015}, status=404
                ),
                "ntfy": web.json_response(
                    {"code": 41000, "http": 410, "error": "gone"}, status=410
                ),
                "gotify": web.Response(status=410),
            }[name]
        if len(hits) > 1:
            return web.Response(status=204 if name == "discord" else 200, text="ok")
        return {  # each service's "not now"
            "slack": web.Response(status=429, headers={"Retry-After": "2"}, text="rate_limited"),
            "discord": web.json_response(
                {"message": "You are being rate limited.", "retry_after": 2, "global": False},
                status=429,
            ),
            "ntfy": web.json_response(
                {"code": 42901, "http": 429, "error": "limit reached"}, status=429
            ),
            "gotify": web.Response(status=503, headers={"Retry-After": "2"}),
        }[name]

    async def wait(self, done: Any) -> None:
        async with asyncio.timeout(120):
            while not done():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    state = Services()
    app = web.Application()
    app.router.add_post("/{tail:.*}", state.handle)
    runner, state.port = await serve(app)
    try:
        yield state
    finally:
        await runner.cleanup()


def write_config(tmp_path: Path, feed: str, port: int) -> Path:
    base = f"http://127.0.0.1:{port}"
    hooks = {
        "slack": f"{base}/slack/services/T1/B1",
        "discord": f"{base}/discord/api/webhooks/42",
        "ntfy": f"{base}/news",
        "gotify": f"{base}/gotify",
    }
    lines = [
        'database = "rssd.sqlite3"',
        "[webhooks]",
        "allow_private_networks = true",
        "retry_seconds = [0.5, 0.5, 0.5]",
        "[[feeds]]",
        f"url = {json.dumps(feed)}",
    ]
    for name, hook in hooks.items():
        (tmp_path / f"{name}.token").write_text(TOKENS[name] + "\n")
        lines += [
            "[[users]]",
            f'name = "{name}-user"',
            f'format = "{name}"',
            f"webhook_url = {json.dumps(hook)}",
            f'secret_file = "{name}.token"',
            'feeds = ["*"]',
            "notify_backlog = true",
        ]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def expected(feed: str) -> dict[str, tuple[str, dict[str, str], Any]]:
    """Per service: the path, the headers that authenticate, the exact body."""
    one, two = "http://example.org/f/0", "http://example.org/f/1"
    return {
        "slack": (
            "/slack/services/T1/B1/SLACKTOKEN",
            {},
            {
                "text": f"*<{feed}|f>*\n• <{one}|one>\n• <{two}|two>",
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": "2 new posts in f"}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": f"*<{feed}|f>*"}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": f"*<{one}|one>*"}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": f"*<{two}|two>*"}},
                ],
            },
        ),
        "discord": (
            "/discord/api/webhooks/42/discord-token",
            {},
            {
                "content": "2 new posts in f",
                "allowed_mentions": {"parse": []},
                "embeds": [
                    {"title": "one", "url": one, "timestamp": "ISO"},
                    {"title": "two", "url": two, "timestamp": "ISO"},
                ],
            },
        ),
        "ntfy": (
            "/",
            {"Authorization": "Bearer tk_ntfy"},
            {
                "topic": "news",
                "tags": ["newspaper"],
                "title": "2 new posts in f",
                "message": "• one\n• two",
                "click": feed,
            },
        ),
        "gotify": (
            "/gotify/message",
            {"X-Gotify-Key": "GotifyApp1"},
            {
                "title": "2 new posts in f",
                "message": f"- [one]({one})\n- [two]({two})",
                "priority": 5,
                "extras": {
                    "client::display": {"contentType": "text/markdown"},
                    "client::notification": {"click": {"url": feed}},
                },
            },
        ),
    }


def without_times(body: Any) -> Any:
    """Discord's embed timestamps (the posts' dates, relative to now) checked as ISO 8601."""
    for embed in body.get("embeds", ()) if isinstance(body, dict) else ():
        assert ISO.match(embed["timestamp"]), embed
        embed["timestamp"] = "ISO"
    return body


async def test_every_format_end_to_end(
    feed_server: FeedServer, services: Services, tmp_path: Path, daemons: Daemons
) -> None:
    feed = feed_server.static("/feed", dated_rss(["one", "two"], name="f"))
    config = write_config(tmp_path, feed, services.port)
    daemon = await daemons.start(config)
    await services.wait(lambda: all(len(services.hits.get(s, [])) >= 2 for s in TOKENS))
    for name, (path, auth, body) in expected(feed).items():
        first, second = services.hits[name][:2]
        assert first.body == second.body, "a retry sends the same message"
        assert second.path == path
        assert {key: second.headers.get(key) for key in auth} == auth
        assert "webhook-signature" not in second.headers  # signing is standard's only
        assert second.headers["Content-Type"] == "application/json"
        assert without_times(second.body) == body, name
    # "Not now", each service's way: a Retry-After header, Discord's body; ntfy's bare 429
    # is retried on retry_seconds (0.5 s, +-10%).
    waits = {
        e["user"]: e["retry_in_s"]
        for e in (e for e in daemon.events if e.get("message") == "delivery.failed")
        if e.get("attempt") == 1
    }
    assert waits["slack-user"] == waits["discord-user"] == waits["gotify-user"] == 2.0
    assert 0.45 <= waits["ntfy-user"] <= 0.55

    # Each service's "gone" disables the endpoint.
    services.phase = "gone"
    feed_server.static("/feed", dated_rss(["three", "one", "two"], name="f"))
    assert (await cli("fetch", "--all", "-c", config)).code == 0
    for name in TOKENS:
        await daemon.wait_for("endpoint.disabled", user=f"{name}-user", reason="gone")
    assert all(len(services.hits[name]) == 3 for name in TOKENS), "no retry after gone"
    errors = {
        e["user"]: e["error_message"]
        for e in (e for e in daemon.events if e.get("message") == "endpoint.disabled")
    }
    assert errors["slack-user"] == "HTTP 404: no_service"
    assert errors["discord-user"] == "HTTP 404: Unknown Webhook"
    users = (await cli("users", "--json", "-c", config)).json()["users"]
    assert {u["name"]: u["state"] for u in users} == {
        f"{n}-user": "disabled (gone)" for n in TOKENS
    }
    shown = json.dumps(users) + daemon.log()
    assert not [token for token in TOKENS.values() if token in shown]
    assert await daemon.stop() == 0
