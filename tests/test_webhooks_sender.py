"""The sender against real loopback receivers: signed, bounded, no redirects, the guard."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from rssd.models.config import config_of
from rssd.models.users import WebhooksConfig, WebhookSecret
from rssd.webhooks.guard import GuardedResolver
from rssd.webhooks.rules import Answer
from rssd.webhooks.sender import Sender
from tests.conftest import FeedServer
from tests.support.webhooks import SECRETS, Receiver

BODY = json.dumps({"type": "posts.new", "data": {"posts": []}}).encode()
ALICE = WebhookSecret.parse(SECRETS["alice"])


def settings(**values: object) -> WebhooksConfig:
    return config_of({"webhooks": {"allow_private_networks": True, **values}}).webhooks


async def send(config: WebhooksConfig, url: str, message_id: str = "msg_1") -> Answer:
    async with Sender(config, "rssd-test") as sender:
        return await sender.send(url, ALICE, message_id, BODY)


async def test_a_signed_post_verifies_twice(receiver: Receiver) -> None:
    answer = await send(settings(), receiver.url("alice"))
    assert answer == Answer(204, None, None)
    assert receiver.bad == []
    (got,) = receiver.received
    assert (got.webhook_id, got.body) == ("msg_1", json.loads(BODY))


async def test_a_redirect_is_not_followed(feed_server: FeedServer) -> None:
    target = feed_server.static("/target", "ok", content_type="text/plain")

    async def redirect(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(target)

    answer = await send(settings(), feed_server.route("/hook", redirect))
    assert answer.status == 302
    assert feed_server.hits == {"/hook": 1}


async def test_retry_after_is_passed_on(feed_server: FeedServer) -> None:
    url = feed_server.static("/hook", "", status=429, headers={"Retry-After": "120"})
    answer = await send(settings(), url)
    assert (answer.status, answer.retry_after) == (429, "120")


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "localhost"])
async def test_private_addresses_are_refused_without_a_request(
    receiver: Receiver, host: str
) -> None:
    url = receiver.url("alice").replace("127.0.0.1", host)
    answer = await send(settings(allow_private_networks=False), url)
    assert answer.status is None
    error = str(answer.error)
    assert error.startswith("refused: ")
    assert "loopback" in error
    assert "allow_private_networks" in error
    assert receiver.attempts == {}
    # Allowed, the same URL is reached (localhost may resolve to ::1 first: a listener on
    # 127.0.0.1 only, so only the literal is sent to here).
    if host == "127.0.0.1":
        assert getattr(await send(settings(), url), "status", None) == 204


async def test_a_huge_answer_is_cut_short(feed_server: FeedServer) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        chunk = b"x" * 65536
        for _ in range(1000):  # 64 MB, never all read
            await response.write(chunk)
        return response

    answer = await send(settings(), feed_server.route("/hook", endless))
    assert answer.status == 200


async def test_a_silent_receiver_times_out(feed_server: FeedServer) -> None:
    never = asyncio.Event()

    async def silent(_: web.Request) -> web.StreamResponse:
        await never.wait()
        raise AssertionError("unreachable")

    answer = await send(settings(timeout_seconds=0.3), feed_server.route("/hook", silent))
    assert answer.error == "timeout after 0.3 s"


async def test_errors_never_show_a_password_or_the_secret() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    answer = await send(settings(), f"http://user:hunter2@127.0.0.1:{port}/hook")
    error = str(answer.error)
    assert error.startswith("connection failed")
    assert "hunter2" not in error
    assert SECRETS["alice"].removeprefix("whsec_") not in error


class Names(AbstractResolver):
    """A name service for the test: each lookup of a name gets the next of its answers
    (a DNS-rebinding server answers differently from one lookup to the next)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        addresses = self.answers[host].pop(0)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


async def send_via(
    names: Names, config: WebhooksConfig, url: str, message_id: str = "msg_1"
) -> Answer:
    async with Sender(config, "rssd-test", resolver=names) as sender:
        return await sender.send(url, ALICE, message_id, BODY)


async def test_the_connection_goes_to_the_address_the_guard_passed(receiver: Receiver) -> None:
    """The guard filters the resolver's answer and aiohttp connects to what is left: there is
    no second lookup a rebinding name server could answer differently."""
    names = Names({"hooks.test": [["127.0.0.1"]]})
    url = f"http://hooks.test:{receiver.port}/alice"
    assert (await send_via(names, settings(), url)).status == 204
    assert names.lookups == ["hooks.test"]
    assert receiver.attempts == {"alice": 1}


@pytest.mark.parametrize(
    "answers",
    [
        [["127.0.0.1"]],
        [["169.254.169.254"]],
        [["::ffff:127.0.0.1"]],
        [["10.0.0.7", "fd00::7"]],
    ],
)
async def test_a_name_resolving_to_private_addresses_is_refused(
    receiver: Receiver, answers: list[list[str]]
) -> None:
    names = Names({"hooks.test": answers})
    url = f"http://hooks.test:{receiver.port}/alice"
    answer = await send_via(names, settings(allow_private_networks=False), url)
    assert answer.status is None
    assert str(answer.error).startswith("refused: hooks.test resolves to ")
    assert receiver.attempts == {}


async def test_private_answers_are_dropped_and_only_global_ones_dialled() -> None:
    """A name answering a global and a loopback address: only the global one is kept."""
    names = Names({"hooks.test": [["8.8.8.8", "127.0.0.1", "::1", "2001:4860:4860::8888"]]})
    kept = await GuardedResolver(False, names).resolve("hooks.test", 443)
    assert [result["host"] for result in kept] == ["8.8.8.8", "2001:4860:4860::8888"]
