"""One notification per story, end to end: a user subscribed to a homepage, to the feed
it links to and to a second feed carrying the same stories gets each new post once, and
one subscribed to the page only gets the feed's new posts (once);
``rssd deliveries --skipped`` and ``rssd users`` show what was skipped.

Since issue 21 (item 10) a page whose feed is configured too stores no posts (they are
stored once, under the feed's entry), so the page leaves nothing to skip: the skipped
copies come from the second feed (README, "One notification per story": "or to two feeds
that carry the same article")."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import FeedServer
from tests.support.commands import cli, dated_rss, run_once_from
from tests.support.webhooks import Receiver
from tests.test_cmd_webhooks import tails, write


async def test_a_subscriber_to_a_page_and_its_feed_gets_each_new_post_once(
    feed_server: FeedServer, receiver: Receiver, tmp_path: Path
) -> None:
    first = dated_rss(["one", "two"], name="f")
    feed = feed_server.static("/feed.xml", first)
    mirror = feed_server.static("/mirror.xml", first)
    page = feed_server.static(
        "/",
        '<!doctype html><html><head><title>Blog</title><link rel="alternate" '
        'type="application/rss+xml" href="/feed.xml"></head><body>hi</body></html>',
        content_type="text/html",
    )
    config = write(
        tmp_path / "config.toml",
        [page, feed, mirror],
        {
            "alice": (receiver.url("alice"), [page, feed, mirror]),
            "bob": (receiver.url("bob"), [feed]),
            "carol": (receiver.url("carol"), [page]),
        },
    )
    await run_once_from(config)
    await run_once_from(config)  # delivers what the first run queued, fetches again
    assert tails(receiver.posts_for("alice")) == ["f-0", "f-1"]
    assert tails(receiver.posts_for("bob")) == ["f-0", "f-1"]
    assert receiver.posts_for("carol") == [], "the feed's first fetch: its backlog"

    second = dated_rss(["three", "one", "two"], name="g")
    feed_server.static("/feed.xml", second)
    feed_server.static("/mirror.xml", second)
    await run_once_from(config)
    await run_once_from(config)
    assert tails(receiver.posts_for("alice")) == ["f-0", "f-1", "g-0", "g-1", "g-2"]
    assert tails(receiver.posts_for("bob")) == ["f-0", "f-1", "g-0", "g-1", "g-2"]
    assert tails(receiver.posts_for("carol")) == ["g-0", "g-1", "g-2"], "the page's user"
    assert receiver.bad == []

    skipped = (await cli("deliveries", "--skipped", "--json", "-c", config)).json_lines()
    assert sorted(s["user_name"] for s in skipped) == ["alice"] * 5
    assert {s["story"].split(":", 1)[0] for s in skipped} == {"link"}
    assert {s["content_source_id"] for s in skipped} <= {2, 3}, "the page (1) stores no posts"
    users = (await cli("users", "--json", "-c", config)).json()["users"]
    assert {u["name"]: u["duplicates_skipped"] for u in users} == {
        "alice": 5,
        "bob": 0,
        "carol": 0,
    }
    table = await cli("deliveries", "--skipped", "--user", "alice", "-c", config)
    assert table.code == 0 and "DUPLICATE OF" in table.out
