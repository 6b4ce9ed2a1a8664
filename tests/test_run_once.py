"""``rssd run --once`` end to end: the daemon as a real subprocess, feeds on a loopback server,
the results read back from the SQLite file it wrote."""

from __future__ import annotations

import asyncio
import re
import socket
import sqlite3
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from rssd.daemon.lock import DaemonLock
from rssd.models.config import load_config
from rssd.repo.migrations import SCHEMA_VERSION
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer, rss
from tests.support.config import write_config
from tests.support.jobs import ongoing_job
from tests.support.process import Finished, run_rssd

pytestmark = pytest.mark.slow

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def run_once(config: Path) -> Finished:
    return await run_rssd("run", "--once", "-c", config)


def rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return list(conn.execute(sql, params).fetchall())


def items(prefix: str, count: int, *, version: int = 1) -> list[dict[str, str]]:
    return [
        {
            "guid": f"urn:test:{prefix}-{i}",
            "title": f"{prefix} post {i} v{version}",
            "link": f"http://example.org/{prefix}/{i}",
            "description": f"text of {prefix} {i} v{version}",
            "pubDate": f"Sun, 01 Nov 2026 {i % 24:02d}:00:00 GMT",
        }
        for i in range(count)
    ]


def assert_log_contract(run: Finished, jobs: list[tuple[int, str]]) -> None:
    """Every line JSON; one fetch.completed/failed per job; run.summary at the end."""
    events = run.events
    assert events, "the daemon logs something"
    for event in events:
        assert {"timestamp", "level", "message"} <= event.keys(), event
        assert ISO_Z.match(event["timestamp"]), event["timestamp"]
        assert event["level"] in {"debug", "info", "warning", "error", "critical"}, event
        assert "event" not in event, "the event name is `message` (ECS)"
    outcomes = [e for e in events if e["message"] in ("fetch.completed", "fetch.failed")]
    per_job = Counter(e["job_id"] for e in outcomes)
    assert sorted(per_job) == sorted(job_id for job_id, _ in jobs)
    assert set(per_job.values()) == {1}, "exactly one outcome line per job"
    status_by_job = dict(jobs)
    for event in outcomes:
        completed = status_by_job[event["job_id"]] == "COMPLETED"
        expected = "fetch.completed" if completed else "fetch.failed"
        assert event["message"] == expected
        assert {"source_id", "job_id", "url", "duration_ms", "error_code"} <= event.keys()
    # run.summary ends the run's log. Only the process's own exit may follow it: a warning
    # that a library thread was abandoned (rssd.cli), which depends on thread timing.
    (summary,) = [index for index, event in enumerate(events) if event["message"] == "run.summary"]
    after = [event["message"] for event in events[summary + 1 :]]
    assert after in ([], ["daemon.threads_abandoned"]), after


# --- Done when: 200 feeds x 50 items, then a second run of 304s ------------------------


async def test_two_hundred_feeds_then_all_not_modified(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    feeds, per_feed = 200, 50
    urls = [
        feed_server.static(
            f"/feed/{n}.xml",
            rss(items(f"f{n}", per_feed), title=f"Feed {n}"),
            headers={"ETag": f'"feed-{n}-v1"'},
        )
        for n in range(feeds)
    ]
    config = write_config(tmp_path / "config.toml", urls, max_concurrency=50, max_per_host=50)
    db = tmp_path / "rssd.sqlite3"

    first = await run_once(config)
    assert first.returncode == 0, first.stderr
    assert rows(db, "SELECT count(*) FROM posts") == [(feeds * per_feed,)]
    assert rows(db, "SELECT count(*) FROM content_sources WHERE enabled = 1") == [(feeds,)]
    jobs = rows(
        db, "SELECT status, http_status, posts_count, count(*) FROM fetch_job GROUP BY 1, 2, 3"
    )
    assert jobs == [("COMPLETED", 200, per_feed, feeds)]
    per_source = rows(
        db,
        "SELECT count(DISTINCT content_source_id), min(n), max(n) FROM "
        "(SELECT content_source_id, count(*) AS n FROM posts GROUP BY 1)",
    )
    assert per_source == [(feeds, per_feed, per_feed)]
    assert rows(db, "SELECT count(*) FROM fetch_job WHERE etag IS NULL") == [(0,)]
    first_jobs = rows(db, "SELECT id, status FROM fetch_job ORDER BY id")
    assert_log_contract(first, [(job_id, status) for job_id, status in first_jobs])
    summary = first.summary
    assert (summary["sources"], summary["completed"], summary["failed"]) == (feeds, feeds, 0)
    assert (summary["posts_new"], summary["posts_updated"]) == (feeds * per_feed, 0)
    assert isinstance(summary["elapsed_ms"], int)

    hits_before = dict(feed_server.hits)
    second = await run_once(config)
    assert second.returncode == 0, second.stderr
    assert rows(db, "SELECT count(*) FROM posts") == [(feeds * per_feed,)], "nothing new"
    new_jobs = rows(
        db,
        "SELECT status, http_status, posts_count, count(*) FROM fetch_job WHERE id > ? "
        "GROUP BY 1, 2, 3",
        (max(job_id for job_id, _ in first_jobs),),
    )
    assert new_jobs == [("COMPLETED", 304, 0, feeds)]
    assert all(feed_server.hits[path] == hits_before[path] + 1 for path in hits_before)
    conditional = [r for r in feed_server.requests if r.headers.get("If-None-Match")]
    assert len(conditional) == feeds
    second_jobs = rows(db, "SELECT id, status FROM fetch_job WHERE id > ?", (len(first_jobs),))
    assert_log_contract(second, [(job_id, status) for job_id, status in second_jobs])
    assert (second.summary["completed"], second.summary["posts_new"]) == (feeds, 0)
    # Both runs stopped cleanly: the next start trusts the file without a check.
    assert (tmp_path / "rssd.sqlite3.lock").read_text().strip() == "clean"


# --- failing feeds are data, not a process failure -------------------------------------


def free_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_failing_feeds_are_recorded_and_the_good_ones_stored(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    async def status(code: int) -> web.StreamResponse:
        return web.Response(status=code, text=f"status {code}")

    async def boom(request: web.Request) -> web.StreamResponse:
        return await status(500)

    async def gone(request: web.Request) -> web.StreamResponse:
        return await status(410)

    good = [feed_server.static(f"/good/{n}", rss(items(f"g{n}", 3))) for n in range(2)]
    failing = {
        feed_server.url("/missing"): ("http_error", 404),
        feed_server.route("/boom", boom): ("http_error", 500),
        feed_server.route("/gone", gone): ("gone", 410),
        feed_server.static(
            "/page.html",
            "<!doctype html><html><head><title>Hi</title></head><body><p>Not a feed</p>"
            "</body></html>",
            content_type="text/html",
        ): ("not_a_feed", 200),
        f"http://127.0.0.1:{free_port()}/feed.xml": ("connection", None),
    }
    disabled = feed_server.static("/disabled", rss(items("d", 1)))
    config = write_config(
        tmp_path / "config.toml", [*good, *failing, {"url": disabled, "enabled": False}]
    )
    db = tmp_path / "rssd.sqlite3"

    run = await run_once(config)
    assert run.returncode == 0, run.stderr
    outcome = {
        url: (status, code, http)
        for url, status, code, http in rows(
            db,
            "SELECT s.url, j.status, j.error_code, j.http_status FROM fetch_job j "
            "JOIN content_sources s ON s.id = j.content_source_id",
        )
    }
    assert outcome == {
        **dict.fromkeys(good, ("COMPLETED", None, 200)),
        **{url: ("FAILED", code, http) for url, (code, http) in failing.items()},
    }
    assert rows(db, "SELECT count(*) FROM posts") == [(6,)]
    messages = rows(db, "SELECT error_code, error_message FROM fetch_job WHERE status = 'FAILED'")
    assert len(messages) == len(failing)
    assert all(message for _, message in messages), f"every failure says why: {messages}"
    assert feed_server.hits.get("/disabled") is None, "a disabled feed is not fetched"

    jobs = rows(db, "SELECT id, status FROM fetch_job")
    assert_log_contract(run, [(job_id, status) for job_id, status in jobs])
    failed_events = {e["url"]: e["error_code"] for e in run.named("fetch.failed")}
    assert failed_events == {url: code for url, (code, _) in failing.items()}
    summary = run.summary
    assert (summary["sources"], summary["completed"], summary["failed"]) == (7, 2, 5)
    assert summary["errors"] == {"http_error": 2, "gone": 1, "not_a_feed": 1, "connection": 1}


# --- dedup across runs, edits in place -------------------------------------------------


class MutableFeed:
    """A feed without validators (no ETag, no Last-Modified) whose body the test changes."""

    def __init__(self, body: str) -> None:
        self.body = body

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text=self.body, content_type="application/rss+xml")


async def test_dedup_across_runs_without_validators(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    first_items = items("p", 3)
    feed = MutableFeed(rss(first_items))
    url = feed_server.route("/feed", feed)
    config = write_config(tmp_path / "config.toml", [url])
    db = tmp_path / "rssd.sqlite3"
    posts_sql = (
        "SELECT id, external_id, created_at, fetch_job_id, content_hash FROM posts ORDER BY id"
    )

    first = await run_once(config)
    assert first.returncode == 0, first.stderr
    assert first.summary["posts_new"] == 3
    stored = rows(db, posts_sql)
    assert [r[1] for r in stored] == [f"urn:test:p-{i}" for i in range(3)]

    # The same body again: nothing parsed, nothing written.
    second = await run_once(config)
    assert second.returncode == 0, second.stderr
    (event,) = second.named("fetch.completed")
    assert (event["outcome"], event["http_status"], event["posts_new"]) == ("unchanged", 200, 0)
    assert rows(db, posts_sql) == stored
    assert not any(r.headers.get("If-None-Match") for r in feed_server.requests)

    # One more item, and the old ones in another order: only the new one is stored.
    extra = items("p", 4)[3]
    feed.body = rss([extra, first_items[2], first_items[0], first_items[1]])
    third = await run_once(config)
    assert third.returncode == 0, third.stderr
    (event,) = third.named("fetch.completed")
    assert (event["outcome"], event["posts_new"], event["posts_updated"]) == ("parsed", 1, 0)
    after = rows(db, posts_sql)
    assert after[:3] == stored, "the old posts are untouched"
    assert [r[1] for r in after] == [f"urn:test:p-{i}" for i in range(4)]
    jobs = rows(db, "SELECT status, http_status, posts_count FROM fetch_job ORDER BY id")
    assert jobs == [("COMPLETED", 200, 3), ("COMPLETED", 200, 0), ("COMPLETED", 200, 1)]


async def test_an_edited_post_is_updated_in_place_not_duplicated(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    original = items("e", 3)
    feed = MutableFeed(rss(original))
    url = feed_server.route("/feed", feed)
    config = write_config(tmp_path / "config.toml", [url])
    db = tmp_path / "rssd.sqlite3"
    sql = "SELECT id, external_id, title, summary, created_at, fetch_job_id FROM posts ORDER BY id"

    assert (await run_once(config)).returncode == 0
    before = rows(db, sql)
    assert [r[2] for r in before] == ["e post 0 v1", "e post 1 v1", "e post 2 v1"]

    feed.body = rss([original[0], items("e", 3, version=2)[1], original[2]])
    run = await run_once(config)
    assert run.returncode == 0, run.stderr
    (event,) = run.named("fetch.completed")
    assert (event["posts_new"], event["posts_updated"]) == (0, 1)
    assert (run.summary["posts_new"], run.summary["posts_updated"]) == (0, 1)
    after = rows(db, sql)
    assert len(after) == 3
    assert after[0] == before[0]
    assert after[2] == before[2]
    edited_id, external_id, title, summary, created_at, job_id = after[1]
    assert (edited_id, external_id, created_at) == (*before[1][:2], before[1][4])
    assert (title, summary) == ("e post 1 v2", "text of e 1 v2")
    assert job_id == event["job_id"] != before[1][5]


# --- an unusable setup exits 1 with a clear message ------------------------------------


@dataclass(frozen=True)
class Broken:
    """A setup ``rssd run --once`` must refuse: exit 1, ``event`` logged saying ``stderr``
    (the daemon writes JSON lines only, so what once was a plain line on stderr is now in
    the event), nothing on stderr."""

    name: str
    config: str  # config.toml's text; {url} is a valid feed on the test server
    stderr: str  # a regex the event's text matches (see said())
    event: str
    prepare: str = ""  # what to put where the database goes: "", "dir", "junk", "newer"
    config_name: str = "config.toml"


BROKEN = [
    Broken(
        "unknown-feed-key",
        'database = "rssd.sqlite3"\n[[feeds]]\nurl = "{url}"\nintervl_minutes = 5\n',
        r"config\.toml: feeds\[0\]\.intervl_minutes: unknown key \(did you mean "
        r"'interval_minutes'\?\)",
        "config.invalid",
    ),
    Broken(
        "toml-syntax-error",
        'database = "rssd.sqlite3"\n[[feeds]\nurl = "{url}"\n',
        r"config\.toml: TOML syntax error: .*line 2",
        "config.invalid",
    ),
    Broken(
        "non-http-url",
        '[[feeds]]\nurl = "ftp://example.org/feed"\n',
        r"config\.toml: feeds\[0\]\.url: URL must start with http:// or https://",
        "config.invalid",
    ),
    Broken(
        "missing-config-file",
        "",
        r"missing\.toml: file not found",
        "config.invalid",
        config_name="missing.toml",
    ),
    Broken(
        "database-is-a-directory",
        'database = "rssd.sqlite3"\n[[feeds]]\nurl = "{url}"\n',
        r"rssd: cannot open database .*rssd\.sqlite3",
        "database.unusable",
        prepare="dir",
    ),
    Broken(
        "database-is-not-sqlite",
        'database = "rssd.sqlite3"\n[[feeds]]\nurl = "{url}"\n',
        r"rssd: cannot use database .*rssd\.sqlite3: file is not a database",
        "database.unusable",
        prepare="junk",
    ),
    Broken(
        "database-from-a-newer-rssd",
        'database = "rssd.sqlite3"\n[[feeds]]\nurl = "{url}"\n',
        rf"rssd: database .*rssd\.sqlite3 has schema version {SCHEMA_VERSION + 1}, newer than",
        "database.unusable",
        prepare="newer",
    ),
]


def said(event: dict[str, Any]) -> str:
    """An error event as the plain line it replaces: ``FILE: error`` lines, ``rssd: ...``."""
    if event["message"] == "config.invalid":
        return "\n".join(f"{Path(event['path']).name}: {line}" for line in event["errors"])
    return f"rssd: {event['error_message']}"


def prepare_database(path: Path, kind: str) -> None:
    if kind == "dir":
        path.mkdir()
    elif kind == "junk":
        path.write_bytes(b"SQLite? no: " + bytes(range(256)) * 16)
    elif kind == "newer":
        with closing(sqlite3.connect(path)) as conn:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
            conn.commit()


async def test_an_unusable_setup_exits_1_with_a_clear_message(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """Table-driven; the cases run concurrently (one daemon start each is the slow part)."""
    url = feed_server.static("/feed", rss(items("x", 1)))
    configs = []
    for case in BROKEN:
        folder = tmp_path / case.name
        folder.mkdir()
        prepare_database(folder / "rssd.sqlite3", case.prepare)
        if case.config:
            (folder / case.config_name).write_text(case.config.format(url=url))
        configs.append(folder / case.config_name)

    runs = await asyncio.gather(*(run_once(config) for config in configs))

    for case, config, run in zip(BROKEN, configs, runs, strict=True):
        assert run.returncode == 1, (case.name, run.stdout, run.stderr)
        assert run.stderr == "", (case.name, run.stderr)
        events = run.events  # stdout is JSON lines only
        (event,) = [e for e in events if e["message"] == case.event]
        assert re.search(case.stderr, said(event)), (case.name, event)
        assert event["level"] == "error", case.name
        if case.event == "config.invalid":
            assert event["path"] == str(config), case.name
            assert event["errors"], case.name
        else:
            assert "rssd.sqlite3" in event["error_message"], case.name
        assert not run.named("run.summary"), case.name
    assert feed_server.hits == {}, "nothing is fetched"
    newer = tmp_path / "database-from-a-newer-rssd" / "rssd.sqlite3"
    assert rows(newer, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)], "left as it was"
    junk = tmp_path / "database-is-not-sqlite" / "rssd.sqlite3"
    assert junk.read_bytes().startswith(b"SQLite? no: ")


async def test_a_database_folder_that_cannot_be_created_exits_1_with_a_clear_message(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    url = feed_server.static("/feed", rss(items("x", 1)))
    (tmp_path / "state").write_text("a file where the database folder should be")
    config = write_config(tmp_path / "config.toml", [url], database="state/rssd.sqlite3")
    run = await run_once(config)
    assert run.returncode == 1
    assert run.stderr == "", run.stderr  # only JSON lines, and only on stdout
    (event,) = [e for e in run.events if e["level"] == "error"]
    assert "state" in event["error_message"]


# --- one daemon per database -----------------------------------------------------------


async def test_a_second_run_while_another_holds_the_lock_exits_1(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    url = feed_server.static("/feed", rss(items("x", 2)))
    config = write_config(tmp_path / "config.toml", [url])
    database = tmp_path / "rssd.sqlite3"
    with DaemonLock(database) as held:
        run = await run_once(config)
    assert run.returncode == 1, run.stderr
    lock_file = str(tmp_path / "rssd.sqlite3.lock")
    assert held.path == Path(lock_file)
    assert run.stderr == "", run.stderr  # only JSON lines, and only on stdout
    (event,) = run.named("daemon.locked")
    assert lock_file in event["error_message"]
    assert event["error_message"].startswith("another rssd"), event
    assert feed_server.hits == {}
    assert not database.exists(), "the database is not even opened"
    # Once the lock is free, the same command works.
    again = await run_once(config)
    assert again.returncode == 0, again.stderr
    assert rows(database, "SELECT count(*) FROM posts") == [(2,)]


# --- crash recovery --------------------------------------------------------------------


async def test_a_run_after_a_crash_recovers_the_jobs_left_active(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """A kill -9 left a job ONGOING and the lock file saying "running": the next run fails
    that job ``interrupted``, checks the database, and fetches the source again."""
    url = feed_server.static("/feed", rss(items("c", 2)))
    config = write_config(tmp_path / "config.toml", [url])
    database = tmp_path / "rssd.sqlite3"
    db = await open_database(database)
    try:
        await SourceRepo(db).sync(load_config(config))
        (source,) = await SourceRepo(db).list()
        left = await ongoing_job(db, source.id)
    finally:
        await db.close()
    (tmp_path / "rssd.sqlite3.lock").write_text("running 999999\n")

    run = await run_once(config)
    assert run.returncode == 0, run.stderr
    (checked,) = run.named("database.checked")
    assert checked["result"] == "ok"
    (recovered,) = run.named("jobs.recovered")
    assert (recovered["jobs"], recovered["error_code"]) == (1, "interrupted")
    assert rows(database, "SELECT id, status, error_code FROM fetch_job ORDER BY id") == [
        (left.id, "FAILED", "interrupted"),
        (left.id + 1, "COMPLETED", None),  # the next job recovery queued, fetched now
        (left.id + 2, "QUEUED", None),  # and the one after: the schedule goes on
    ]
    assert rows(database, "SELECT count(*) FROM posts") == [(2,)]
    assert (tmp_path / "rssd.sqlite3.lock").read_text().strip() == "clean"
