"""``rssd users test NAME``: a test message in the user's format through the real sender
and guard; status, time and the answer printed; the exit code says delivered or not;
nothing stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support.commands import cli
from tests.support.loopback import serve
from tests.support.webhooks import SECRETS, Receiver

GOTIFY_TOKEN = "AxY7.gotify-app-token"


@pytest.fixture
async def service() -> AsyncIterator[tuple[int, list[web.Request], list[bytes]]]:
    """A chat/push service stand-in: answers as ``/STATUS`` says, records what it got."""
    seen: list[web.Request] = []
    bodies: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request)
        bodies.append(await request.read())
        status = int(request.match_info["status"])
        text = "ok" if status == 200 else "boom \x1b[2J" + "x" * 5000
        return web.Response(status=status, text=text)

    app = web.Application()
    app.router.add_post("/{status}/{rest:.*}", handle)
    runner, port = await serve(app)
    try:
        yield port, seen, bodies
    finally:
        await runner.cleanup()


def config(tmp_path: Path, user: dict[str, Any], allow_private: bool = True) -> Path:
    lines = [
        'database = "rssd.sqlite3"',
        "[webhooks]",
        f"allow_private_networks = {json.dumps(allow_private)}",
        "[[users]]",
        *(f"{key} = {json.dumps(value)}" for key, value in user.items()),
    ]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_a_standard_receiver_answering_200(tmp_path: Path, receiver: Receiver) -> None:
    path = config(
        tmp_path,
        {"name": "alice", "webhook_url": receiver.url("alice"), "secret": SECRETS["alice"]},
    )
    result = await cli("users", "test", "alice", "-c", path)
    assert result.code == 0, result
    lines = result.out.splitlines()
    assert lines[0] == f"alice (standard) -> {receiver.url('alice')}"
    assert lines[1].startswith("delivered: HTTP 204 in ") and lines[1].endswith(" s")
    assert lines[2] == "answer: (empty)"
    assert receiver.bad == []  # signed as every message is
    assert [r.body["type"] for r in receiver.received] == ["rssd.test"]
    assert SECRETS["alice"].removeprefix("whsec_") not in result.out + result.err
    assert not (tmp_path / "rssd.sqlite3").exists()  # not a delivery: nothing stored


async def test_a_gotify_service_answering_200_gets_its_token_header(
    tmp_path: Path, service: tuple[int, list[web.Request], list[bytes]]
) -> None:
    port, seen, bodies = service
    (tmp_path / "token").write_text(GOTIFY_TOKEN)
    path = config(
        tmp_path,
        {
            "name": "bob",
            "format": "gotify",
            "webhook_url": f"http://127.0.0.1:{port}/200/gotify",
            "secret_file": "token",
        },
    )
    result = await cli("users", "test", "bob", "-c", path)
    assert result.code == 0, result
    assert result.out.splitlines()[1].startswith("delivered: HTTP 200 in ")
    assert result.out.splitlines()[2] == "answer: ok"
    assert seen[0].path == "/200/gotify/message"
    assert seen[0].headers["X-Gotify-Key"] == GOTIFY_TOKEN
    assert "webhook-signature" not in seen[0].headers
    assert json.loads(bodies[0])["message"] == "Test message from rssd for user bob"
    assert GOTIFY_TOKEN not in result.out + result.err


async def test_a_receiver_answering_500(
    tmp_path: Path, service: tuple[int, list[web.Request], list[bytes]]
) -> None:
    port, seen, bodies = service
    (tmp_path / "slack.token").write_text("SECRETPART\n")  # the URL's last part, kept apart
    hook = f"http://127.0.0.1:{port}/500/services/T000/B000"
    path = config(
        tmp_path,
        {"name": "carol", "format": "slack", "webhook_url": hook, "secret_file": "slack.token"},
    )
    result = await cli("users", "test", "carol", "-c", path)
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[0] == f"carol (slack) -> http://127.0.0.1:{port}/***"  # Slack's token hidden
    assert lines[1].startswith("NOT delivered: HTTP 500 in ")
    assert lines[2].startswith("answer: boom \\x1b[2Jxxx") and lines[2].endswith("…")
    assert len(lines[2]) < 400  # bounded
    assert "\x1b" not in result.out
    assert "SECRETPART" not in result.out + result.err
    assert json.loads(bodies[0])["text"] == "Test message from rssd for user carol"
    assert seen[0].path == "/500/services/T000/B000/SECRETPART"


async def test_a_private_address_is_refused(tmp_path: Path, receiver: Receiver) -> None:
    path = config(
        tmp_path,
        {"name": "alice", "webhook_url": receiver.url("alice"), "secret": SECRETS["alice"]},
        allow_private=False,
    )
    result = await cli("users", "test", "alice", "-c", path)
    assert result.code == 1
    assert "NOT delivered: refused: 127.0.0.1 is a loopback address" in result.out
    assert "answer:" not in result.out
    assert receiver.attempts == {}


async def test_an_unknown_user(tmp_path: Path, receiver: Receiver) -> None:
    path = config(
        tmp_path,
        {"name": "alice", "webhook_url": receiver.url("alice"), "secret": SECRETS["alice"]},
    )
    result = await cli("users", "test", "zed", "-c", path)
    assert result.code == 2
    assert "no user named 'zed'" in result.err
