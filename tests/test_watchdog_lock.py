"""A table locked for long is not a hung daemon: with ``LOCK TABLE fetch_job`` held, the
claim loop waits for the database, and the systemd watchdog pings go on
(``watchdog.database_wait``) instead of stopping (the issue saw every daemon's pings stop,
so that systemd would have restarted them all at once, which lifts no lock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import FeedServer, rss
from tests.support.config import write_config
from tests.support.notify import NotifyListener, notify_socket
from tests.support.process import Daemons

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
