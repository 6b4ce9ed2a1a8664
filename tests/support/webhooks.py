"""Shared by the webhook tests: configs with users, and a loopback receiver that verifies
every request with the ``standardwebhooks`` package and, independently, with hmac."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook

from rssd.models.config import Config, config_of
from tests.support.loopback import serve

SECRETS = {
    "alice": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "bob": "whsec_" + base64.b64encode(b"bob's very own secret key, 32 b").decode(),
    "carol": "whsec_" + base64.b64encode(b"carol: another secret of 32 byte").decode(),
    "dave": "whsec_" + base64.b64encode(b"dave's secret, thirty-two bytes.").decode(),
    "erin": "whsec_" + base64.b64encode(b"erin's secret, thirty-two bytes.").decode(),
}


def user(name: str, url: str, feeds: list[str], **settings: Any) -> dict[str, Any]:
    return {"name": name, "webhook_url": url, "secret": SECRETS[name], "feeds": feeds, **settings}


def make_config(
    tmp_path: Path, feeds: list[str], users: list[dict[str, Any]], **webhooks: Any
) -> Config:
    return config_of(
        {
            "database": str(tmp_path / "rssd.sqlite3"),
            "feeds": [{"url": url} for url in feeds],
            "users": users,
            "webhooks": {"allow_private_networks": True, **webhooks},
        }
    )


def hmac_verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks v1 by hand: HMAC-SHA256 of ``id.timestamp.body``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(part.removeprefix("v1,"), expected)
        for part in headers["webhook-signature"].split()
        if part.startswith("v1,")
    )


@dataclass
class Received:
    user: str
    webhook_id: str
    timestamp: str
    body: dict[str, Any]


Reply = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


@dataclass
class Receiver:
    """``/NAME`` receives NAME's webhooks. Every request must verify twice, else the test
    fails. ``replies[name]`` decides the answer (default 204); ``attempts`` counts all."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)
    #: (user, webhook-id) of every verified request, whatever the answer.
    ids: list[tuple[str, str]] = field(default_factory=list)
    #: Requests being answered right now, per user; and the most seen at once.
    active: dict[str, int] = field(default_factory=dict)
    most_active: int = 0
    replies: dict[str, Reply] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        secret = SECRETS.get(name)
        try:
            assert secret is not None, f"no such user {name}"
            Webhook(secret).verify(body, headers)
            assert hmac_verify(secret, headers, body), "hmac check failed"
            assert headers.get("content-type") == "application/json"
        except Exception as exc:
            self.bad.append(f"{name}: {exc!r}")
            return web.Response(status=400)
        count = self.attempts.get(name, 0) + 1
        self.attempts[name] = count
        self.ids.append((name, headers["webhook-id"]))
        async with self.changed:
            self.changed.notify_all()
        reply = self.replies.get(name)
        self.active[name] = self.active.get(name, 0) + 1
        self.most_active = max(self.most_active, self.active[name])
        try:
            response = await reply(request, count) if reply else web.Response(status=204)
        finally:
            self.active[name] -= 1
        if 200 <= response.status < 300:
            self.received.append(
                Received(
                    name, headers["webhook-id"], headers["webhook-timestamp"], json.loads(body)
                )
            )
        async with self.changed:
            self.changed.notify_all()
        return response

    def posts_for(self, name: str) -> list[str]:
        """The external ids announced to ``name`` (with repeats, in arrival order)."""
        return [
            post["external_id"]
            for item in self.received
            if item.user == name
            for post in item.body["data"]["posts"]
        ]

    async def wait_for(self, predicate: Callable[[], bool], deadline: float = 120.0) -> None:
        async with asyncio.timeout(deadline), self.changed:
            await self.changed.wait_for(predicate)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{name}", self._handle)
        self._runner, self.port = await serve(app, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
