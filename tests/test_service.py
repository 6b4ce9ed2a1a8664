"""``rssd run`` end to end: the daemon as a real subprocess, with a NOTIFY_SOCKET bound by
the test, a loopback feed server, and the SQLite file read afterwards (issue #3)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from rssd.daemon.watcher import stamp
from rssd.models.config import load_config
from rssd.models.dto import ErrorCode
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer, Handler, rss
from tests.support.config import Feed, config_text, replace_file, write_config
from tests.support.jobs import queue_job
from tests.support.notify import NotifyListener, monotonic_usec, notify_socket
from tests.support.process import WAIT, Daemon, Daemons

pytestmark = pytest.mark.slow

ITEMS = [
    {"title": f"Post {n}", "guid": f"urn:post:{n}", "link": f"http://example.org/{n}"}
    for n in (1, 2, 3)
]


@pytest.fixture
async def notify(tmp_path: Path) -> AsyncIterator[NotifyListener]:
    async with notify_socket(str(tmp_path / "notify.sock")) as listener:
        yield listener


def hanging(arrived: asyncio.Event) -> Handler:
    """A server that accepts the request and never answers."""

    async def handler(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return handler


async def arrival(arrived: asyncio.Event, daemon: Daemon) -> None:
    try:
        async with asyncio.timeout(WAIT):
            await arrived.wait()
    except TimeoutError:
        pytest.fail(f"the daemon never requested the feed\n{daemon.log()}")


def query(database: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Read the daemon's database from this process (WAL: fine while it writes)."""
    with sqlite3.connect(database) as connection:
        rows: list[tuple[object, ...]] = connection.execute(sql, params).fetchall()
    connection.close()
    return rows


def active_jobs(database: Path) -> list[tuple[object, ...]]:
    """Jobs in progress. (A QUEUED job is a source's next fetch: the schedule, not work.)"""
    return query(database, "SELECT id, status FROM fetch_job WHERE status = 'ONGOING'")


async def fetched_before_and_interrupted(config: Path) -> None:
    """Every feed known, its latest job FAILED ``interrupted``, as a daemon stopped mid-fetch
    leaves it: the next daemon fetches it at once instead of spreading new feeds over up to
    10 s. Only for tests about what happens *during* a fetch, to keep them quick."""
    db = await open_database(load_config(config).database)
    try:
        await SourceRepo(db).sync(load_config(config))
        jobs = FetchJobRepo(db)
        for source in await SourceRepo(db).list():
            job = await queue_job(db, source.id)
            assert job is not None
            await jobs.mark_failed(job.id, ErrorCode.INTERRUPTED, "seeded by the test")
    finally:
        await db.close()


async def watcher_running(notify: NotifyListener, daemon: Daemon, ready: int) -> None:
    """Wait until the config watcher has surely taken its first look at the file.

    The watcher task is created just before the watchdog task, and asyncio starts tasks in
    creation order: once the first WATCHDOG=1 arrived, the watcher has its stamp. (An edit
    made before that is lost: see test_an_edit_made_during_start_up_is_not_lost.)
    """
    await notify.wait("WATCHDOG", "1", start=ready + 1, daemon=daemon)


def lock_state(lock: Path) -> str:
    """What the lock file beside the database says: "running <pid>", "clean" or ""."""
    try:
        return lock.read_text().strip()
    except FileNotFoundError:
        return ""


@asynccontextmanager
async def held_in_start_up(daemons: Daemons, config: Path) -> AsyncIterator[Daemon]:
    """Start a daemon and hold it in start-up while the body runs: after it read the config
    and took its lock, before its signal handlers and its config watcher exist.

    The test holds the database's write lock, so the daemon's schema check waits on it (as
    start-up waits on a long quick_check after a crash); the lock file saying "running
    <pid>" shows the daemon is that far.
    """
    database = load_config(config).database_path
    assert database is not None
    lock = database.with_name(database.name + ".lock")
    await (await open_database(database)).close()
    blocker = sqlite3.connect(database, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        daemon = await daemons.start(config)
        async with asyncio.timeout(WAIT):
            while lock_state(lock) != f"running {daemon.pid}":  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        yield daemon
    finally:
        if blocker.in_transaction:
            blocker.rollback()
        blocker.close()


def notify_env(listener: NotifyListener, **extra: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": listener.address, **extra}


# -- 1. systemd: READY, WATCHDOG, STATUS ---------------------------------------------------


async def test_ready_then_watchdog_pings_and_status(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons, notify: NotifyListener
) -> None:
    url = feed_server.static("/a.xml", rss(ITEMS))
    config = write_config(tmp_path / "config.toml", [{"url": url}])
    daemon = await daemons.start(config, env=notify_env(notify, WATCHDOG_USEC="1000000"))

    ready = await notify.wait("READY", "1", daemon=daemon)
    assert ready == 0, notify.raw  # nothing before READY
    status = notify.datagrams[ready]["STATUS"]
    assert re.fullmatch(r"1 sources, \d+ fetching, last minute: \d+ ok, \d+ failed", status)
    # READY=1 comes after recovery and the feed-list sync, not before.
    logged_ready = await daemon.wait_for("daemon.ready")
    synced = daemon.find("sources.synced")
    assert synced is not None and synced < logged_ready, daemon.log()

    # WATCHDOG_USEC=1 s: pings at half of it, repeatedly, while the daemon lives.
    ping = ready
    for _ in range(3):
        ping = await notify.wait("WATCHDOG", "1", start=ping + 1, daemon=daemon)

    assert await daemon.stop() == 0, daemon.log()
    stopping = notify.find("STOPPING", "1")
    assert stopping is not None and stopping > ready, notify.raw
    assert daemon.find("daemon.stopped") is not None, daemon.log()
    assert "Traceback" not in daemon.stderr.decode(), daemon.log()
    assert lock_state(tmp_path / "rssd.sqlite3.lock") == "clean"
    assert await daemon.group_gone() == []  # nothing of it left running


# -- 2. reload on an edit of config.toml, no signal ------------------------------------------


async def test_a_feed_added_by_editing_the_file_is_fetched_without_a_signal(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons, notify: NotifyListener
) -> None:
    first = feed_server.static("/first.xml", rss(ITEMS[:1]))
    config = write_config(tmp_path / "config.toml", [{"url": first}])
    daemon = await daemons.spawn(  # -c relative: the log names the file absolutely
        "run", "-c", "config.toml", cwd=tmp_path, env=notify_env(notify, WATCHDOG_USEC="200000")
    )
    ready = await notify.wait("READY", "1", daemon=daemon)
    await watcher_running(notify, daemon, ready)

    added = feed_server.static("/added.xml", rss(ITEMS))
    write_config(config, [{"url": first}, {"url": added, "name": "Added"}])  # temp + rename

    changed = await daemon.wait_for("config.changed")
    assert daemon.events[changed]["path"] == str(config)
    await daemon.wait_for("config.reloaded", start=changed, added=1, updated=0, disabled=0)
    await daemon.wait_for("fetch.completed", url=added, posts_new=3)
    assert daemon.find("config.reload_requested") is None, daemon.log()  # no signal involved

    assert await daemon.stop() == 0, daemon.log()
    counts = query(
        tmp_path / "rssd.sqlite3",
        "SELECT s.url, s.name, s.enabled, count(p.id) FROM content_sources s "
        "LEFT JOIN posts p ON p.content_source_id = s.id WHERE s.url = ? GROUP BY s.id",
        added,
    )
    assert counts == [(added, "Added", 1, 3)]


# -- 3. reload on SIGHUP ---------------------------------------------------------------------


def rewrite_unnoticed(path: Path, text: str) -> None:
    """Change the file's content in place keeping its inode, size and mtime, so that only a
    SIGHUP can tell the daemon about it (the file watcher compares exactly those)."""
    before = path.stat()
    data = text.encode()
    assert len(data) == before.st_size
    with path.open("r+b") as file:
        file.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert stamp(path) == (before.st_ino, before.st_mtime_ns, before.st_size)


async def test_a_feed_added_then_sighup_is_fetched_with_reloading_then_ready(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons, notify: NotifyListener
) -> None:
    first = feed_server.static("/first.xml", rss(ITEMS[:1]))
    added = feed_server.static("/added.xml", rss(ITEMS))
    feeds: list[Feed] = [{"url": first}]
    new_text = config_text([*feeds, {"url": added}], database="rssd.sqlite3")
    old_text = config_text(feeds, database="rssd.sqlite3")
    old_text += "#" * (len(new_text) - len(old_text) - 1) + "\n"  # same size as the new one
    config = tmp_path / "config.toml"
    replace_file(config, old_text)
    daemon = await daemons.start(config, env=notify_env(notify, WATCHDOG_USEC="200000"))
    ready = await notify.wait("READY", "1", daemon=daemon)
    await watcher_running(notify, daemon, ready)  # its stamp must be of the old file

    rewrite_unnoticed(config, new_text)
    before_signal = monotonic_usec()
    daemon.proc.send_signal(signal.SIGHUP)

    requested = await daemon.wait_for("config.reload_requested", trigger="SIGHUP")
    reloading = await notify.wait("RELOADING", "1", start=ready + 1, daemon=daemon)
    monotonic = notify.datagrams[reloading].get("MONOTONIC_USEC", "")
    assert monotonic.isdigit(), notify.raw
    assert before_signal <= int(monotonic) <= monotonic_usec()  # CLOCK_MONOTONIC is shared
    ready_again = await notify.wait("READY", "1", start=reloading + 1, daemon=daemon)
    assert "STATUS" in notify.datagrams[ready_again]
    assert "invalid" not in notify.datagrams[ready_again]["STATUS"]
    await daemon.wait_for("config.reloaded", start=requested, added=1)
    await daemon.wait_for("fetch.completed", url=added, posts_new=3)
    assert daemon.find("config.changed") is None, daemon.log()  # SIGHUP did it, not the poll
    assert await daemon.stop() == 0, daemon.log()


# -- 4. an invalid edit ----------------------------------------------------------------------


async def test_an_invalid_edit_is_logged_and_the_old_config_keeps_running(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons, notify: NotifyListener
) -> None:
    first = feed_server.static("/first.xml", rss(ITEMS[:1]))
    config = write_config(tmp_path / "config.toml", [{"url": first}])
    daemon = await daemons.start(config, env=notify_env(notify, WATCHDOG_USEC="200000"))
    ready = await notify.wait("READY", "1", daemon=daemon)
    await watcher_running(notify, daemon, ready)

    bad = config_text(
        [{"url": first}, {"url": "ftp://example.org/feed.xml"}],
        database="rssd.sqlite3",
        interval_minuts=5,
    )
    replace_file(config, bad)
    invalid = await daemon.wait_for("config.invalid")
    errors = daemon.events[invalid]["errors"]
    assert isinstance(errors, list), daemon.log()
    assert any("interval_minuts" in error for error in errors), errors  # every error listed
    assert any("feeds[1].url" in error and "ftp://" in error for error in errors), errors

    reloading = await notify.wait("RELOADING", "1", start=ready + 1, daemon=daemon)
    assert notify.datagrams[reloading].get("MONOTONIC_USEC", "").isdigit(), notify.raw
    ready_again = await notify.wait("READY", "1", start=reloading + 1, daemon=daemon)
    assert "invalid" in notify.datagrams[ready_again].get("STATUS", ""), notify.raw
    # Still alive: the watchdog keeps pinging and the old feed is still configured.
    await notify.wait("WATCHDOG", "1", start=ready_again + 1, daemon=daemon)
    assert daemon.proc.returncode is None, daemon.log()
    assert daemon.find("config.reloaded") is None, daemon.log()

    # And still fetching: a valid edit afterwards is applied and its new feed fetched.
    added = feed_server.static("/added.xml", rss(ITEMS))
    write_config(config, [{"url": first}, {"url": added}])
    await daemon.wait_for("config.reloaded", start=invalid, added=1, disabled=0)
    await daemon.wait_for("fetch.completed", url=added, posts_new=3)
    assert await daemon.stop() == 0, daemon.log()
    sources = query(tmp_path / "rssd.sqlite3", "SELECT url, enabled FROM content_sources")
    assert sorted(sources) == sorted([(first, 1), (added, 1)])


# -- 5. SIGTERM while a fetch hangs ----------------------------------------------------------


async def test_sigterm_during_a_hung_fetch_exits_0_and_records_it_interrupted(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons, notify: NotifyListener
) -> None:
    arrived = asyncio.Event()
    url = feed_server.route("/hang.xml", hanging(arrived))
    config = write_config(
        tmp_path / "config.toml", [{"url": url, "timeout_seconds": 60}], shutdown_grace_seconds=1
    )
    database = tmp_path / "rssd.sqlite3"
    await fetched_before_and_interrupted(config)
    daemon = await daemons.start(config, env=notify_env(notify))
    await notify.wait("READY", "1", daemon=daemon)
    await arrival(arrived, daemon)
    assert [status for _, status in active_jobs(database)] == ["ONGOING"]

    assert await daemon.stop(signal.SIGTERM) == 0, daemon.log()
    assert notify.find("STOPPING", "1") is not None, notify.raw
    assert daemon.find("daemon.signal", signal="SIGTERM") is not None, daemon.log()
    assert daemon.find("daemon.cancelled_fetches", count=1) is not None, daemon.log()
    interrupted = daemon.find("fetch.failed", url=url, error_code="interrupted")
    assert interrupted is not None, daemon.log()
    event = daemon.events[interrupted]  # as README promises for every fetch.failed
    assert event["error_message"] == "fetch cancelled (shutdown)"
    assert "source_name" in event
    assert event["daemon_id"] == daemon.events[daemon.find("daemon.ready") or 0]["daemon_id"]
    assert daemon.find("daemon.stopped") is not None, daemon.log()

    assert active_jobs(database) == []
    jobs = query(
        database, "SELECT status, error_code, ended_at IS NOT NULL FROM fetch_job ORDER BY id"
    )
    # The seeded one, this one, and the source's next fetch (due at once) on record.
    assert jobs == [("FAILED", "interrupted", 1)] * 2 + [("QUEUED", None, 0)]
    assert lock_state(tmp_path / "rssd.sqlite3.lock") == "clean"


# -- 6. kill -9 mid-fetch, then restart ------------------------------------------------------


async def test_kill_9_mid_fetch_then_restart_recovers_and_fetches_at_once(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons
) -> None:
    arrived = asyncio.Event()
    hang = hanging(arrived)
    answering = False

    async def handler(request: web.Request) -> web.StreamResponse:
        if answering:
            return web.Response(text=rss(ITEMS), content_type="application/rss+xml")
        return await hang(request)

    url = feed_server.route("/feed.xml", handler)
    # interval_minutes = 1: were the interrupted job counted as a failure, the next fetch
    # would be about a minute away, past the deadline; "at once" is what makes it in time.
    config = write_config(
        tmp_path / "config.toml",
        [{"url": url, "timeout_seconds": 60, "interval_minutes": 1}],
        shutdown_grace_seconds=1,
    )
    database = tmp_path / "rssd.sqlite3"
    lock = tmp_path / "rssd.sqlite3.lock"

    await fetched_before_and_interrupted(config)
    first = await daemons.start(config)
    await first.wait_for("daemon.ready")
    await arrival(arrived, first)
    assert [status for _, status in active_jobs(database)] == ["ONGOING"]
    assert first.find("jobs.recovered") is None, first.log()
    assert first.find("database.checked") is None, first.log()  # a new database: no check
    await first.crash()  # kill -9 of the daemon itself (its parse workers are left over)
    assert first.proc.returncode == -signal.SIGKILL
    assert lock_state(lock) == f"running {first.pid}"

    answering = True
    second = await daemons.start(config)
    checked = await second.wait_for("database.checked", check="quick_check", result="ok")
    recovered = await second.wait_for("jobs.recovered", jobs=1, error_code="interrupted")
    ready = await second.wait_for("daemon.ready")
    assert checked < recovered < ready, second.log()
    await second.wait_for("fetch.completed", start=ready, url=url, posts_new=3)
    assert await second.stop() == 0, second.log()

    jobs = query(database, "SELECT status, error_code FROM fetch_job ORDER BY id")
    assert jobs == [("FAILED", "interrupted")] * 2 + [("COMPLETED", None), ("QUEUED", None)]
    posts = query(
        database,
        "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT content_source_id, "
        "external_id FROM posts)) FROM posts",
    )
    assert posts == [(3, 3)]
    assert query(database, "PRAGMA integrity_check") == [("ok",)]
    assert query(database, "PRAGMA foreign_key_check") == []
    assert lock_state(lock) == "clean"


# -- 7. one daemon per database --------------------------------------------------------------


async def test_a_second_daemon_on_the_same_database_is_refused(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons
) -> None:
    arrived = asyncio.Event()
    url = feed_server.route("/hang.xml", hanging(arrived))
    config = write_config(
        tmp_path / "config.toml", [{"url": url, "timeout_seconds": 60}], shutdown_grace_seconds=1
    )
    database = tmp_path / "rssd.sqlite3"
    lock = tmp_path / "rssd.sqlite3.lock"
    await fetched_before_and_interrupted(config)
    first = await daemons.start(config)
    await first.wait_for("daemon.ready")
    await arrival(arrived, first)
    ongoing = active_jobs(database)
    assert [status for _, status in ongoing] == ["ONGOING"]

    second = await daemons.start(config)
    assert await second.wait_exit() == 1, second.log()
    assert second.stderr == b"", second.log()  # only JSON lines, and only on stdout
    locked = second.find("daemon.locked")
    assert locked is not None, second.log()
    message = second.events[locked]["error_message"]
    assert str(lock) in message or str(lock.resolve()) in message, second.log()
    assert str(first.pid) in message, second.log()
    assert second.find("jobs.recovered") is None, second.log()

    # The refused daemon touched nothing: the first one's fetch is still in flight.
    assert first.proc.returncode is None, first.log()
    assert active_jobs(database) == ongoing
    assert lock_state(lock) == f"running {first.pid}"
    assert await first.stop() == 0, first.log()


# -- 8. SIGINT, abstract notify socket -------------------------------------------------------


@pytest.mark.parametrize("to_group", [False, True], ids=["process", "ctrl-c-group"])
async def test_sigint_stops_it_with_exit_0_abstract_notify_socket(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons, to_group: bool
) -> None:
    """SIGINT to the daemon, or to its whole process group as Ctrl-C in a terminal does
    (the parse pool's processes get it too and must not turn it into a traceback)."""
    url = feed_server.static("/a.xml", rss(ITEMS))
    config = write_config(tmp_path / "config.toml", [{"url": url}])
    async with notify_socket(f"@rssd-test-{uuid.uuid4().hex}") as listener:
        daemon = await daemons.start(config, env=notify_env(listener))
        ready = await listener.wait("READY", "1", daemon=daemon)
        await daemon.wait_for("daemon.ready")
        if to_group:
            os.killpg(daemon.pid, signal.SIGINT)
            assert await daemon.wait_exit() == 0, daemon.log()
        else:
            assert await daemon.stop(signal.SIGINT) == 0, daemon.log()
        stopping = listener.find("STOPPING", "1")
        assert stopping is not None and stopping > ready, listener.raw
    assert daemon.find("daemon.signal", signal="SIGINT") is not None, daemon.log()
    assert daemon.find("daemon.stopped") is not None, daemon.log()
    assert "Traceback" not in daemon.stderr.decode(), daemon.log()
    assert lock_state(tmp_path / "rssd.sqlite3.lock") == "clean"
    assert await daemon.group_gone() == []  # nothing of it left running


# -- bugs found earlier, fixed ----------------------------------------------------------


async def test_kill_9_leaves_no_parse_pool_processes_behind(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons
) -> None:
    url = feed_server.static("/a.xml", rss(ITEMS))
    config = write_config(tmp_path / "config.toml", [{"url": url}])
    daemon = await daemons.start(config)
    # The pool starts with the first body to parse: the feed's first fetch.
    await daemon.wait_for("fetch.completed", url=url)
    assert len(daemon.group()) > 1, daemon.group()  # the daemon and its parse pool
    await daemon.crash()
    left = await daemon.group_gone()
    assert left == [], f"still running after the daemon was killed: {left}"


async def test_an_edit_made_during_start_up_is_not_lost(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons
) -> None:
    first = feed_server.static("/first.xml", rss(ITEMS[:1]))
    added = feed_server.static("/added.xml", rss(ITEMS))
    config = write_config(tmp_path / "config.toml", [{"url": first}])
    async with held_in_start_up(daemons, config) as daemon:
        write_config(config, [{"url": first}, {"url": added}])
    await daemon.wait_for("daemon.ready")
    await daemon.wait_for("config.reloaded", added=1)
    await daemon.wait_for("fetch.completed", url=added)
    assert await daemon.stop() == 0, daemon.log()


async def test_sighup_during_start_up_is_a_reload_not_a_death(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons
) -> None:
    url = feed_server.static("/a.xml", rss(ITEMS))
    config = write_config(tmp_path / "config.toml", [{"url": url}])
    async with held_in_start_up(daemons, config) as daemon:
        daemon.proc.send_signal(signal.SIGHUP)
    await daemon.wait_for("daemon.ready")
    await daemon.wait_for("config.reloaded")
    assert await daemon.stop() == 0, daemon.log()
