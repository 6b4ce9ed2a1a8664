"""Webhooks end to end with the daemon as a subprocess: kill -9 at random moments while
posts are stored and delivered loses nothing; ``rssd run`` delivers continuously and a
receiver that never answers holds up neither fetching nor other users."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
from collections.abc import Callable
from contextlib import closing, suppress
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import FeedServer
from tests.support.config import replace_file
from tests.support.process import Daemon, Daemons
from tests.support.webhooks import SECRETS, Receiver

pytestmark = pytest.mark.slow


def config_text(
    feeds: list[str], users: list[tuple[str, str, list[str], str]], **hooks: object
) -> str:
    lines = ['database = "rssd.sqlite3"', "[webhooks]", "allow_private_networks = true"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in hooks.items()]
    for url in feeds:
        lines += ["[[feeds]]", f"url = {json.dumps(url)}", "interval_minutes = 1"]
    for name, hook, subscribed, extra in users:
        lines += [
            "[[users]]",
            f"name = {json.dumps(name)}",
            f"webhook_url = {json.dumps(hook)}",
            f"secret = {json.dumps(SECRETS[name])}",
            f"feeds = {json.dumps(subscribed)}",
            "notify_backlog = true",
            extra,
        ]
    return "\n".join(lines) + "\n"


class GrowingFeed:
    """Request k shows items 0..3k (the newest 40 of them): three new ones each time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests = 0
        self.on_request: list[Callable[[], None]] = []

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        for hook in list(self.on_request):
            hook()
        newest = 3 * self.requests
        items = "".join(
            f"<item><title>{'even' if n % 2 == 0 else 'odd'} {n}</title>"
            f'<guid isPermaLink="false">{self.name}-{n}</guid></item>'
            for n in range(newest, max(newest - 40, -1), -1)
        )
        body = (
            '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
            f"<link>http://example.org/</link><description>d</description>{items}</channel></rss>"
        )
        return web.Response(body=body, content_type="application/rss+xml")


def stored_posts(database: Path) -> dict[str, set[str]]:
    """External ids per feed URL, as the database holds them."""
    with closing(sqlite3.connect(database)) as conn:
        rows = conn.execute(
            "SELECT c.url, p.external_id FROM posts p JOIN content_sources c "
            "ON c.id = p.content_source_id"
        ).fetchall()
    out: dict[str, set[str]] = {}
    for url, external_id in rows:
        out.setdefault(url, set()).add(external_id)
    return out


async def test_kill_9_at_random_moments_loses_nothing(
    feed_server: FeedServer, receiver: Receiver, tmp_path: Path
) -> None:
    feeds = {name: GrowingFeed(name) for name in ("a", "b")}
    urls = {name: feed_server.route(f"/{name}", feed) for name, feed in feeds.items()}
    config = tmp_path / "config.toml"
    replace_file(
        config,
        config_text(
            list(urls.values()),
            [
                ("alice", receiver.url("alice"), ["*"], ""),
                ("bob", receiver.url("bob"), [urls["a"]], 'keep = ["title=^even"]'),
            ],
            retry_seconds=[0.05] * 5,
        ),
    )
    rng = random.Random(1234)
    current: list[Daemon] = []

    def kill_now() -> None:
        for daemon in current:
            with suppress(ProcessLookupError):
                os.killpg(daemon.pid, signal.SIGKILL)

    async def kill_on_webhook(_: web.Request, __: int) -> web.StreamResponse:
        kill_now()  # received, but the daemon never learns it was: sent again later
        return web.Response(status=204)

    # Each moment comes up a fixed number of times, in a random order. A "feed" round
    # always kills (every --once run requests both feeds): those are the kills the test
    # counts on. A "delay" may be outrun by a fast run, a "webhook" find nothing to send.
    moments = ["feed"] * 3 + ["webhook"] * 3 + ["delay"] * 2
    rng.shuffle(moments)
    feed_kills = 0
    for round_number, moment in enumerate(moments):
        receiver.replies.clear()
        for feed in feeds.values():
            feed.on_request.clear()
        if moment == "feed":
            rng.choice(list(feeds.values())).on_request.append(kill_now)
        elif moment == "webhook":
            receiver.replies[rng.choice(["alice", "bob"])] = kill_on_webhook
        daemon = await Daemon.start(config, args=("--once",))
        current[:] = [daemon]
        try:
            if moment == "delay":
                # A random moment (not a measurement): the run may also end before it.
                with suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(daemon.proc.wait()), rng.uniform(0, 1.5))
                kill_now()
            code = await daemon.wait_exit()
        finally:
            await daemon.kill()
        feed_kills += moment == "feed" and code == -signal.SIGKILL
        assert code in (0, -signal.SIGKILL), f"round {round_number}: {code}\n{daemon.log()}"
    assert feed_kills == 3, "the test must really have killed the daemon at work"

    receiver.replies.clear()
    for feed in feeds.values():
        feed.on_request.clear()
    final = await Daemon.start(config, args=("--once",))
    try:
        assert await final.wait_exit() == 0, final.log()
    finally:
        await final.kill()

    assert receiver.bad == []
    stored = stored_posts(tmp_path / "rssd.sqlite3")
    assert stored[urls["a"]] and stored[urls["b"]]
    alice = set(receiver.posts_for("alice"))
    bob = set(receiver.posts_for("bob"))
    assert alice == stored[urls["a"]] | stored[urls["b"]], "every stored post reached alice"
    titles = {
        p["external_id"]: p["title"] for r in receiver.received for p in r.body["data"]["posts"]
    }
    assert bob == {i for i in stored[urls["a"]] if titles[i].startswith("even")}
    with closing(sqlite3.connect(tmp_path / "rssd.sqlite3")) as conn:
        assert conn.execute(
            "SELECT status, count(*) FROM deliveries GROUP BY status"
        ).fetchall() == [
            ("delivered", conn.execute("SELECT count(*) FROM deliveries").fetchone()[0])
        ]


async def test_the_daemon_delivers_while_a_silent_receiver_hangs(
    feed_server: FeedServer, receiver: Receiver, tmp_path: Path, daemons: Daemons
) -> None:
    release = asyncio.Event()

    async def silent(_: web.Request, __: int) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=204)

    receiver.replies["alice"] = silent
    first, second = GrowingFeed("a"), GrowingFeed("b")
    url_a, url_b = feed_server.route("/a", first), feed_server.route("/b", second)
    users = [
        ("alice", receiver.url("alice"), ["*"], ""),
        ("bob", receiver.url("bob"), ["*"], ""),
    ]
    config = tmp_path / "config.toml"
    replace_file(config, config_text([url_a], users, timeout_seconds=300))
    daemon = await daemons.start(config)
    try:
        await receiver.wait_for(lambda: receiver.active.get("alice") == 1)
        await receiver.wait_for(lambda: len(receiver.posts_for("bob")) == 4)
        # alice's request hangs; a feed added now is fetched and delivered to bob.
        replace_file(config, config_text([url_a, url_b], users, timeout_seconds=300))
        daemon.proc.send_signal(signal.SIGHUP)
        await daemon.wait_for("fetch.completed", url=url_b, posts_new=4, webhooks_queued=2)
        await receiver.wait_for(lambda: len(receiver.posts_for("bob")) == 8)
        assert receiver.active.get("alice") == 1, "alice's first request is still unanswered"
        assert daemon.find("delivery.sent", user="alice") is None
        assert await daemon.stop() == 0, daemon.log()
    finally:
        release.set()
    assert receiver.bad == []
    with closing(sqlite3.connect(tmp_path / "rssd.sqlite3")) as conn:
        rows = conn.execute(
            "SELECT u.name, d.status, count(*) FROM deliveries d JOIN users u "
            "ON u.id = d.user_id GROUP BY u.name, d.status ORDER BY u.name"
        ).fetchall()
    assert rows == [("alice", "pending", 2), ("bob", "delivered", 2)], "kept for the next run"
