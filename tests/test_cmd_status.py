"""``rssd status`` against a database filled by a real ``rssd run --once``."""

from __future__ import annotations

import random
import re
from datetime import timedelta
from pathlib import Path

import pytest

from rssd.clock import to_iso, utcnow
from rssd.daemon.reconcile import reconcile
from rssd.repo.claims import ClaimRepo
from rssd.repo.daemons import DaemonRepo, Identity
from rssd.repo.hosts import HostRepo
from rssd.repo.open import open_database
from tests.conftest import FeedServer
from tests.support.commands import World, cli, populated, run_once_from
from tests.support.config import write_config

pytestmark = pytest.mark.both_backends


async def test_json_reports_every_state(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    world = await populated(feed_server, tmp_path, db_target)
    result = await cli("status", "-c", world.config, "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert document["format"] == 1
    by_url = {source["url"]: source for source in document["sources"]}
    states = {key: by_url[url]["state"] for key, url in world.urls.items()}
    assert states == {
        "ok": "ok",
        "news": "ok",
        "failing": "failing",
        "gone": "gone",
        "disabled": "disabled",
        "new": "never_fetched",
    }

    ok = by_url[world.urls["ok"]]
    assert ok["name"] is None
    assert ok["enabled"] is True
    assert ok["fetching"] is False
    assert ok["posts_total"] == 3
    assert ok["consecutive_failures"] == 0
    assert ok["last_error"] is None
    assert ok["last_attempt"]["status"] == "COMPLETED"
    assert ok["last_attempt"]["http_status"] == 200
    assert ok["last_attempt"]["posts_new"] == 3
    assert ok["last_success_at"] == ok["last_attempt"]["ended_at"]
    assert ok["next_due_at"] > ok["last_success_at"]  # ISO 8601 UTC text sorts as time

    failing = by_url[world.urls["failing"]]
    assert failing["consecutive_failures"] == 1
    assert failing["last_success_at"] is None
    assert failing["last_error"]["error_code"] == "http_error"
    assert failing["last_error"]["http_status"] == 500
    assert failing["next_due_at"] is not None

    gone = by_url[world.urls["gone"]]
    assert gone["last_error"]["error_code"] == "gone"
    assert gone["next_due_at"] is None  # not fetched again until its config entry changes

    disabled = by_url[world.urls["disabled"]]
    assert disabled["enabled"] is False
    assert disabled["last_attempt"] is None
    assert disabled["next_due_at"] is None

    new = by_url[world.urls["new"]]
    assert new["last_attempt"] is None
    assert new["next_due_at"] is not None

    assert document["not_in_database"] == []
    assert document["totals"] == {
        "sources": 6,
        "ok": 2,
        "failing": 1,
        "gone": 1,
        "disabled": 1,
        "never_fetched": 1,
        "fetching": 0,
        "posts": 5,
    }


async def test_json_last_attempt_is_the_last_finished_job_not_the_queued_plan(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    """A daemon keeps every source's next job QUEUED: ``last_attempt`` is still the last
    job that ended (its result), the plan shows only as ``next_due_at``."""
    world = await populated(feed_server, tmp_path, db_target)
    db = await open_database(db_target)
    try:
        queued = await reconcile(db, ClaimRepo(db, "test"), random.Random(1))
    finally:
        await db.close()
    assert queued == 4  # ok, news, failing, new: every enabled source but the gone one
    document = (await cli("status", "-c", world.config, "--json")).json()
    by_url = {source["url"]: source for source in document["sources"]}
    ok = by_url[world.urls["ok"]]
    assert ok["last_attempt"]["status"] == "COMPLETED"
    assert ok["last_attempt"]["http_status"] == 200
    assert ok["last_attempt"]["ended_at"] == ok["last_success_at"]
    assert ok["current_attempt"] is None
    failing = by_url[world.urls["failing"]]
    assert failing["last_attempt"]["status"] == "FAILED"
    assert failing["last_attempt"]["http_status"] == 500
    assert by_url[world.urls["new"]]["last_attempt"] is None  # queued, never attempted
    assert by_url[world.urls["new"]]["next_due_at"] is not None


async def test_human_output_is_aligned_with_relative_times(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    world = await populated(feed_server, tmp_path, db_target)
    result = await cli("status", "-c", world.config)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    header = lines[0]
    assert header.split() == [
        "ID", "NAME", "STATE", "LAST", "ATTEMPT", "RESULT", "LAST", "SUCCESS", "FAILS",
        "NEXT", "DUE", "EVERY", "WHY", "POSTS", "URL",
    ]  # fmt: skip
    rows = [line for line in lines[1:] if re.match(r"^\s*\d+\s.*http:", line)]
    assert len(rows) == 6
    url_column = header.index("URL")
    for row in rows:  # every URL starts in the URL column: the columns are aligned
        assert row[url_column:].startswith("http://127.0.0.1"), row
    by_url = {row[url_column:]: row for row in rows}
    assert "ok" in by_url[world.urls["ok"]].split()
    # last attempt, result, last success, failures, next due ("in 59m"), the interval
    # and why, posts
    assert re.search(
        r"(just now|\d+[smhd] ago) +200, 3 new +(just now|\d+[smhd] ago) +0 +in \d+[smhd] "
        r"+\d+[smhd] +(posting rate|start|fixed) +3 ",
        by_url[world.urls["ok"]],
    ), by_url[world.urls["ok"]]
    assert "never fetched" in by_url[world.urls["new"]]
    assert "Switched off" in by_url[world.urls["disabled"]]
    assert "HTTP 500" in by_url[world.urls["failing"]]
    # A failing feed gets its last error on the line under it.
    failing_at = lines.index(by_url[world.urls["failing"]])
    assert lines[failing_at + 1].lstrip().startswith("last error")
    assert "http_error" in lines[failing_at + 1]
    assert lines[-1] == (
        "6 sources: 2 ok, 1 failing, 1 gone, 1 disabled, 1 never fetched; 0 fetching now; 5 posts"
    )


async def test_failing_lists_the_feeds_that_need_a_look_and_exits_1(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    world: World = await populated(feed_server, tmp_path, db_target)
    result = await cli("status", "-c", world.config, "--failing")
    assert result.code == 1
    shown = [line for line in result.out.splitlines() if re.match(r"^\s*\d+\s.*http:", line)]
    assert len(shown) == 2
    assert any(line.endswith(world.urls["failing"]) for line in shown)
    assert any(line.endswith(world.urls["gone"]) for line in shown)

    as_json = await cli("status", "-c", world.config, "--failing", "--json")
    assert as_json.code == 1
    assert {s["state"] for s in as_json.json()["sources"]} == {"failing", "gone"}
    assert as_json.json()["totals"]["sources"] == 6  # totals always cover every source


async def test_failing_exits_0_when_all_is_well(feed_server: FeedServer, tmp_path: Path) -> None:
    url = feed_server.static(
        "/fine", "<rss version='2.0'><channel><title>t</title></channel></rss>"
    )
    config = write_config(tmp_path / "config.toml", [{"url": url}])
    await run_once_from(config)
    result = await cli("status", "-c", config, "--failing")
    assert result.code == 0, result.out + result.err
    assert result.out.splitlines()[0] == "no source needs attention"


async def test_without_a_database_it_says_so(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", [{"url": "https://example.org/feed"}])
    result = await cli("status", "-c", config)
    assert result.code == 1
    assert "no database" in result.err
    assert not (tmp_path / "rssd.sqlite3").exists()  # a reader never creates one


async def test_invalid_config_is_reported_like_check_config(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('intervl_minutes = 5\n[[feeds]]\nurl = "https://example.org/f"\n')
    result = await cli("status", "-c", config)
    assert result.code == 1
    assert "intervl_minutes: unknown key" in result.err


async def test_feeds_the_daemon_has_not_loaded_yet_are_named(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    world = await populated(feed_server, tmp_path, db_target)
    config = world.config.read_text()
    world.config.write_text(config + '\n[[feeds]]\nurl = "https://later.example/feed"\n')
    as_json = await cli("status", "-c", world.config, "--json")
    assert as_json.json()["not_in_database"] == ["https://later.example/feed"]
    human = await cli("status", "-c", world.config)
    assert human.out.splitlines()[-1] == (
        "not in the database yet (a running daemon adds it within seconds): "
        "https://later.example/feed"
    )


async def test_it_names_the_keys_this_config_differs_in_from_the_synced_one(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    world = await populated(feed_server, tmp_path, db_target)  # "new" added after the sync
    document = (await cli("status", "-c", world.config, "--json")).json()
    assert document["config"]["differs_in"] == [f"feeds[{world.urls['new']}]"]
    assert document["config"]["file_hash"] != document["config"]["synced"]["config_hash"]


async def test_a_silent_daemon_is_gone_not_drift_and_in_flight_counts_its_fetches(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    """A daemon killed -9 stops its heartbeat: after one lease it is listed as gone (and
    no longer as drift); a live one's fetches in flight are its ONGOING jobs right now."""
    world = await populated(feed_server, tmp_path, db_target)
    db = await open_database(db_target)
    try:
        live = DaemonRepo(db, Identity("host:1:live", "host", 1))
        dead = DaemonRepo(db, Identity("host:2:dead", "host", 2))
        await live.beat(0, "a-live-hash")
        await dead.beat(0, "an-old-hash")
        await db.write_one(
            "UPDATE daemons SET heartbeat_at = :then WHERE id = 'host:2:dead'",
            {"then": to_iso(utcnow() - timedelta(minutes=5))},
        )
        assert await ClaimRepo(db, "host:1:live").claim_source(1) is not None
    finally:
        await db.close()
    document = (await cli("status", "-c", world.config, "--json")).json()
    daemons = {d["id"]: d for d in document["daemons"]}
    assert daemons["host:2:dead"]["gone"] is True
    assert daemons["host:2:dead"]["drift"] is False
    assert daemons["host:1:live"]["gone"] is False
    assert daemons["host:1:live"]["drift"] is True
    assert daemons["host:1:live"]["in_flight"] == 1


async def test_each_feed_shows_its_interval_and_why_and_a_paused_host_says_so(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    """Issue 24: the interval the next fetch was planned with and its reason, in the text
    and in --json; a host paused by a 429's Retry-After overrides the reason."""
    world = await populated(feed_server, tmp_path, db_target)
    document = (await cli("status", "-c", world.config, "--json")).json()
    by_url = {source["url"]: source for source in document["sources"]}
    ok = by_url[world.urls["ok"]]
    assert ok["interval_reason"] in ("start", "posting rate")
    assert ok["interval_seconds"] >= 15 * 60  # min_interval_minutes
    assert by_url[world.urls["disabled"]]["interval_reason"] is None
    db = await open_database(db_target)
    try:
        await HostRepo(db).pause("127.0.0.1", 3600)
    finally:
        await db.close()
    document = (await cli("status", "-c", world.config, "--json")).json()
    reasons = {s["url"]: s["interval_reason"] for s in document["sources"] if s["enabled"]}
    assert set(reasons.values()) == {"host paused"}, reasons
    text = await cli("status", "-c", world.config)
    assert "host paused" in text.out


async def test_on_sqlite_it_says_whether_the_daemon_runs(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    world = await populated(feed_server, tmp_path)  # run --once: no daemon left behind
    before = await cli("status", "-c", world.config)
    assert "daemon: not running" in before.out.splitlines()
    assert (await cli("status", "-c", world.config, "--json")).json()["daemon_running"] is False
    db = await open_database(world.database)
    try:
        await DaemonRepo(db, Identity("host:42:abc", "host", 42)).beat(0, None)
    finally:
        await db.close()
    after = await cli("status", "-c", world.config)
    assert any(
        line.startswith("daemon: running (pid 42 on host, heartbeat")
        for line in after.out.splitlines()
    ), after.out
    assert after.out.splitlines()[-1].startswith("6 sources:")
    assert (await cli("status", "-c", world.config, "--json")).json()["daemon_running"] is True
