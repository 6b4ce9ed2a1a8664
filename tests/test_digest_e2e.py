"""A digest across a kill -9, with the daemon as a subprocess: the posts of an open period
wait in the database; killed and restarted after the period closed, the daemon sends one
digest listing every one of them, grouped by feed, once."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import FeedServer
from tests.support.commands import dated_rss
from tests.support.process import Daemons
from tests.support.webhooks import SECRETS, Receiver

pytestmark = pytest.mark.slow


def write(path: Path, feeds: list[str], receiver: Receiver) -> Path:
    lines = ['database = "rssd.sqlite3"', "[webhooks]", "allow_private_networks = true"]
    for url in feeds:
        lines += ["[[feeds]]", f"url = {json.dumps(url)}"]
    for name, extra in (("alice", 'digest = "1h"'), ("bob", "")):
        lines += [
            "[[users]]",
            f'name = "{name}"',
            f"webhook_url = {json.dumps(receiver.url(name))}",
            f"secret = {json.dumps(SECRETS[name])}",
            'feeds = ["*"]',
            "notify_backlog = true",
            extra,
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_a_digest_across_a_kill_9_loses_nothing(
    feed_server: FeedServer, receiver: Receiver, tmp_path: Path, daemons: Daemons
) -> None:
    a = feed_server.static("/a", dated_rss(["a1", "a2"], name="a"))
    b = feed_server.static("/b", dated_rss(["b1"], name="b"))
    config = write(tmp_path / "config.toml", [a, b], receiver)
    daemon = await daemons.start(config)
    await receiver.wait_for(lambda: len(receiver.posts_for("bob")) == 3)  # bob: at once
    assert not [r for r in receiver.received if r.user == "alice"], "alice's period is open"
    await daemon.kill()

    database = tmp_path / "rssd.sqlite3"
    with closing(sqlite3.connect(database)) as conn:
        assert conn.execute("SELECT count(*) FROM digest_items").fetchone()[0] == 3
        # The hour went by while the daemon was down.
        conn.execute("UPDATE digest_items SET queued_at = '2026-01-01T00:00:00.000Z'")
        conn.commit()

    daemon = await daemons.start(config)
    await receiver.wait_for(lambda: any(r.user == "alice" for r in receiver.received))
    await daemon.wait_for("delivery.sent", user="alice")
    assert await daemon.stop() == 0
    digests = [r.body for r in receiver.received if r.user == "alice"]
    assert len(digests) == 1
    assert digests[0]["type"] == "posts.digest"
    feeds = {f["url"]: sorted(p["title"] for p in f["posts"]) for f in digests[0]["data"]["feeds"]}
    assert feeds == {a: ["a1", "a2"], b: ["b1"]}
    assert receiver.bad == []
    with closing(sqlite3.connect(database)) as conn:
        assert conn.execute("SELECT count(*) FROM digest_items").fetchone()[0] == 0
        assert conn.execute(
            "SELECT d.status, d.posts_count FROM deliveries d JOIN users u ON u.id = d.user_id "
            "WHERE u.name = 'alice'"
        ).fetchall() == [("delivered", 3)]
