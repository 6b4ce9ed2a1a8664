"""``rssd users``, ``rssd deliveries``, ``rssd redeliver`` and ``rssd run --once``'s delivery
pass, end to end: a real config.toml, real runs, a loopback receiver verifying each request."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web

from tests.conftest import FeedServer
from tests.support.commands import Result, cli, dated_rss, run_once_from
from tests.support.webhooks import SECRETS, Receiver
from tests.test_daemon_output import every_line_json, rssd


def write(path: Path, feeds: list[str], users: dict[str, tuple[str, list[str]]]) -> Path:
    lines = [
        'database = "rssd.sqlite3"',
        "[webhooks]",
        "allow_private_networks = true",
        "retry_seconds = [3600]",
    ]
    for url in feeds:
        lines += ["[[feeds]]", f"url = {json.dumps(url)}"]
    for name, (hook, subscribed) in users.items():
        lines += [
            "[[users]]",
            f"name = {json.dumps(name)}",
            f"webhook_url = {json.dumps(hook)}",
            f"secret = {json.dumps(SECRETS[name])}",
            f"feeds = {json.dumps(subscribed)}",
            "notify_backlog = true",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def tails(external_ids: list[str]) -> list[str]:
    """The guids (``f-0``...), which feedparser resolves against the feed's URL."""
    return sorted(i.rsplit("/", 1)[-1] for i in external_ids)


def no_secret(result: Result) -> Result:
    for secret in SECRETS.values():
        assert secret.removeprefix("whsec_") not in result.out + result.err
    return result


async def broken(_: web.Request, __: int) -> web.StreamResponse:
    """A receiver that answers every request with HTTP 500."""
    return web.Response(status=500)


async def test_the_operator_view(
    feed_server: FeedServer, receiver: Receiver, tmp_path: Path
) -> None:
    feed = feed_server.static("/feed", dated_rss(["one", "two"], name="f"))

    receiver.replies["bob"] = broken
    config = write(
        tmp_path / "config.toml",
        [feed],
        {"alice": (receiver.url("alice"), [feed]), "bob": (receiver.url("bob"), ["*"])},
    )
    summary = await run_once_from(config)
    assert summary.posts_new == 2
    assert tails(receiver.posts_for("alice")) == ["f-0", "f-1"]
    assert receiver.attempts["bob"] == 1
    assert receiver.bad == []

    users = no_secret(await cli("users", "--json", "-c", config)).json()["users"]
    by_name = {u["name"]: u for u in users}
    assert by_name["alice"]["state"] == "ok"
    assert (by_name["alice"]["delivered"], by_name["alice"]["pending"]) == (1, 0)
    assert by_name["alice"]["feeds"] == [feed]
    assert by_name["bob"]["state"] == "failing"
    assert by_name["bob"]["last_error"] == "HTTP 500"
    assert by_name["bob"]["pending"] == 1
    human = no_secret(await cli("users", "-c", config))
    assert human.code == 0
    assert "USER" in human.out
    assert "failing" in human.out

    failed = no_secret(await cli("deliveries", "--failed", "--json", "-c", config)).json_lines()
    assert [(d["user_name"], d["status"], d["attempts"]) for d in failed] == [("bob", "pending", 1)]
    everything = (await cli("deliveries", "--json", "-c", config)).json_lines()
    assert len(everything) == 2
    only_alice = (await cli("deliveries", "--user", "alice", "--json", "-c", config)).json_lines()
    assert [d["status"] for d in only_alice] == ["delivered"]
    assert (await cli("deliveries", "--dead", "-c", config)).out.strip() == "no deliveries match"
    table = await cli("deliveries", "-c", config)
    assert "pending, next in" in table.out

    # Redeliver alice's message by id: same webhook-id, a new request.
    (alice_message,) = only_alice
    result = await cli("redeliver", alice_message["id"], "-c", config)
    assert (result.code, result.out.splitlines()[0]) == (
        0,
        "1 message due again (a running daemon sends them within seconds)",
    )
    await run_once_from(config)
    assert [i for n, i in receiver.ids if n == "alice"] == [alice_message["id"]] * 2

    # bob's endpoint is fixed; his message is redelivered by user and time.
    del receiver.replies["bob"]
    result = await cli("redeliver", "--user", "bob", "--since", "1h", "-c", config)
    assert result.code == 0
    await run_once_from(config)
    assert tails(receiver.posts_for("bob")) == ["f-0", "f-1"]

    unknown = await cli("redeliver", "msg_nope", "-c", config)
    assert (unknown.code, unknown.err.strip()) == (
        2,
        "rssd redeliver: no such deliveries: msg_nope",
    )
    assert (await cli("redeliver", "-c", config)).code == 2
    assert (await cli("users", "--enable", "nobody", "-c", config)).code == 2
    assert (await cli("deliveries", "--user", "nobody", "-c", config)).code == 2


async def test_a_gone_endpoint_is_enabled_by_command(
    feed_server: FeedServer, receiver: Receiver, tmp_path: Path
) -> None:
    feed = feed_server.static("/feed", dated_rss(["one"], name="f"))
    gone = [True]

    async def maybe_gone(_: web.Request, __: int) -> web.StreamResponse:
        return web.Response(status=410 if gone[0] else 204)

    receiver.replies["alice"] = maybe_gone
    config = write(tmp_path / "config.toml", [feed], {"alice": (receiver.url("alice"), [feed])})
    await run_once_from(config)
    (alice,) = (await cli("users", "--json", "-c", config)).json()["users"]
    assert alice["state"] == "disabled (gone)"
    listed = (await cli("deliveries", "-c", config)).out
    assert "pending, held: endpoint disabled (gone)" in listed  # not "next in 10s"
    assert "next in" not in listed
    gone[0] = False
    enabled = await cli("users", "--enable", "alice", "-c", config)
    assert enabled.out.strip() == (
        "alice: endpoint enabled (was disabled (gone)); 1 pending message due now"
    )
    await run_once_from(config)
    assert tails(receiver.posts_for("alice")) == ["f-0"]
    (alice,) = (await cli("users", "--json", "-c", config)).json()["users"]
    assert (alice["state"], alice["pending"], alice["delivered"]) == ("ok", 0, 1)


async def test_redeliver_dead_selects_the_dead_and_keeps_their_history(
    feed_server: FeedServer, receiver: Receiver, tmp_path: Path
) -> None:
    feed = feed_server.static("/feed", dated_rss(["one"], name="f"))

    receiver.replies["bob"] = broken
    config = write(
        tmp_path / "config.toml",
        [feed],
        {"alice": (receiver.url("alice"), [feed]), "bob": (receiver.url("bob"), [feed])},
    )
    config.write_text(
        config.read_text().replace("retry_seconds = [3600]", "retry_seconds = [0.01]")
    )
    await run_once_from(config)
    await asyncio.sleep(0.05)  # bob's retry falls due (the config asks for 10 ms)
    await run_once_from(config)
    dead = (await cli("deliveries", "--dead", "--json", "-c", config)).json_lines()
    assert [(d["user_name"], d["attempts"]) for d in dead] == [("bob", 2)]
    assert (await cli("redeliver", "--dead", "--user", "alice", "-c", config)).out.startswith(
        "0 messages due again"
    )

    del receiver.replies["bob"]
    again = await cli("redeliver", "--dead", "--since", "1h", "-c", config)
    assert (again.code, again.out.splitlines()[0]) == (
        0,
        "1 message due again (a running daemon sends them within seconds)",
    )
    (bob,) = (await cli("deliveries", "--user", "bob", "--json", "-c", config)).json_lines()
    assert (bob["status"], bob["attempts"], bob["earlier_attempts"]) == ("pending", 0, 2)
    assert bob["last_error"] == "HTTP 500"  # the history stays
    await run_once_from(config)
    (bob,) = (await cli("deliveries", "--user", "bob", "--json", "-c", config)).json_lines()
    assert (bob["status"], bob["attempts"], bob["earlier_attempts"]) == ("delivered", 1, 2)
    assert "1 (+2 before redeliver)" in (await cli("deliveries", "-c", config)).out
    assert len(receiver.posts_for("alice")) == 1  # alice's delivered message: not again
    both = await cli("redeliver", "msg_x", "--dead", "-c", config)
    assert both.code == 2


async def test_a_feeds_password_reaches_neither_users_nor_the_receiver(
    feed_server: FeedServer, receiver: Receiver, tmp_path: Path
) -> None:
    plain = feed_server.static("/private", dated_rss(["one"], name="p"))
    feed = plain.replace("http://", "http://alice:s3cret@", 1)
    config = write(tmp_path / "config.toml", [feed], {"alice": (receiver.url("alice"), [feed])})
    await run_once_from(config)
    assert [item.body["data"]["feed"]["url"] for item in receiver.received] == [plain]
    assert receiver.bad == []
    as_json = await cli("users", "--json", "-c", config)
    (alice,) = as_json.json()["users"]
    assert alice["feeds"] == [plain.replace("http://", "http://alice:***@", 1)]
    human = await cli("users", "-c", config)
    assert human.code == 0
    for result in (as_json, human):
        assert "s3cret" not in result.out + result.err


async def test_delivery_lines_and_listings_name_the_feed(
    feed_server: FeedServer, receiver: Receiver, tmp_path: Path
) -> None:
    feed = feed_server.static("/feed", dated_rss(["one"], name="Jane's log"))
    config = write(tmp_path / "config.toml", [feed], {"alice": (receiver.url("alice"), [feed])})
    code, out, err = await rssd("run", "--once", "-c", config)
    assert code == 0, err
    sent = [e for e in every_line_json(out, err) if e["message"] == "delivery.sent"]
    assert [(e["user"], e["source_name"]) for e in sent] == [("alice", "Jane's log")]
    (listed,) = (await cli("deliveries", "--json", "-c", config)).json_lines()
    assert listed["source_name"] == "Jane's log"
