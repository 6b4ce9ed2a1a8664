"""A table locked for long is not a hung daemon: with ``LOCK TABLE fetch_job`` held, the
claim loop waits for the database, and the systemd watchdog pings go on
(``watchdog.database_wait``) instead of stopping (the issue saw every daemon's pings stop,
so that systemd would have restarted them all at once, which lifts no lock). ``rssd status``
meanwhile answers within its lock wait and shows the daemon waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import FeedServer, rss
from tests.support.config import write_config
from tests.support.notify import NotifyListener, notify_socket
from tests.support.process import Daemons, run_rssd

#: PostgreSQL: the issue's case (a LOCK TABLE by an operator or a migration elsewhere).
pytestmark = [pytest.mark.parametrize("backend", ["postgresql"], indirect=True), pytest.mark.slow]


@pytest.fixture
async def notify(tmp_path: Path) -> AsyncIterator[NotifyListener]:
    async with notify_socket(str(tmp_path / "notify.sock")) as listener:
        yield listener


async def test_a_locked_table_does_not_stop_the_watchdog(
    db_target: str,
    feed_server: FeedServer,
    tmp_path: Path,
    daemons: Daemons,
    notify: NotifyListener,
) -> None:
    url = feed_server.static("/a.xml", rss([{"title": "One", "guid": "1"}]))
    config = write_config(tmp_path / "config.toml", [url], database=db_target)
    env = {"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "2000000"}
    daemon = await daemons.start(config, env=env)
    await notify.wait("READY", "1", daemon=daemon)
    await daemon.wait_for("fetch.completed")
    locker = await psycopg.AsyncConnection.connect(db_target)
    try:
        await locker.execute("LOCK TABLE fetch_job IN ACCESS EXCLUSIVE MODE")
        # The claim loop's next turn waits on the lock; the watchdog tells it apart...
        await daemon.wait_for("watchdog.database_wait")
        assert daemon.find("watchdog.scheduler_stalled") is None, daemon.log()
        # ...and pings on while the lock is held.
        pings = len(notify.datagrams)
        await notify.wait("WATCHDOG", "1", start=pings, daemon=daemon)
    finally:
        await locker.rollback()
        await locker.close()
    assert await daemon.stop() == 0, daemon.log()


async def _wait_recorded(db_target: str, daemon_pid: int) -> None:
    """Until the daemon's heartbeat row says it is waiting on the database."""
    async with await psycopg.AsyncConnection.connect(db_target, autocommit=True) as conn:
        for _ in range(400):
            cursor = await conn.execute(
                "SELECT 1 FROM daemons WHERE pid = %s AND database_wait_since IS NOT NULL",
                (daemon_pid,),
            )
            if await cursor.fetchone() is not None:
                return
            await asyncio.sleep(0.1)
    raise AssertionError("the daemon's row never recorded its wait")


async def test_status_answers_while_a_table_is_locked_and_shows_the_wait(
    db_target: str, feed_server: FeedServer, tmp_path: Path, daemons: Daemons
) -> None:
    url = feed_server.static("/a.xml", rss([{"title": "One", "guid": "1"}]))
    config = write_config(tmp_path / "config.toml", [url], database=db_target)
    daemon = await daemons.start(config)
    await daemon.wait_for("fetch.completed")
    locker = await psycopg.AsyncConnection.connect(db_target)
    try:
        await locker.execute("LOCK TABLE fetch_job IN ACCESS EXCLUSIVE MODE")
        await _wait_recorded(db_target, daemon.pid)
        # Without its lock wait, status would hang here until the lock is released.
        shown, text = await asyncio.gather(
            run_rssd("status", "--json", "-c", config, timeout=30),
            run_rssd("status", "-c", config, timeout=30),
        )
    finally:
        await locker.rollback()
        await locker.close()
    assert not shown.timed_out and shown.returncode == 1, shown.stderr
    document = shown.json()
    assert "sources" in document["unread"], document
    (row,) = [d for d in document["daemons"] if d["pid"] == daemon.pid]
    assert row["database_wait_since"] is not None and row["in_flight"] is None, row
    assert row["database_wait_seconds"] >= 0, row
    assert text.returncode == 1, text.stderr
    assert f"(pid {daemon.pid} on " in text.stdout, text.stdout
    assert "waiting on the database for" in text.stdout, text.stdout
    assert "the feeds could not be read" in text.stdout, text.stdout
    assert await daemon.stop() == 0, daemon.log()
