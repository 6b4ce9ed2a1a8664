"""Issue 14.5: every long-lived task of the daemon survives any exception.

Before: ``_watch_config`` handled only ConfigError. A database write-locked through a
reload, or config.toml replaced by a symlink to /dev/zero, ended the watcher without a log
line (later edits and SIGHUPs ignored); a FIFO as config.toml blocked the event loop, and
the daemon then ignored SIGTERM. The daemon runs as a subprocess here; the last test runs
the Service in-process, since only there can a task be made to die for good.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rssd.daemon import service as service_module
from rssd.daemon.service import Service, supervised
from rssd.models.config import load_config
from tests.conftest import FeedServer, rss
from tests.support.config import write_config
from tests.support.notify import NotifyListener, notify_socket
from tests.support.process import WAIT, Daemons

pytestmark = pytest.mark.slow

ITEMS = [{"title": f"Post {n}", "guid": f"urn:p:{n}", "link": f"http://e.org/{n}"} for n in (1, 2)]


@pytest.fixture
async def notify(tmp_path: Path) -> AsyncIterator[NotifyListener]:
    async with notify_socket(str(tmp_path / "notify.sock")) as listener:
        yield listener


async def test_config_swapped_for_dev_zero_then_a_fifo_then_fixed(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons, notify: NotifyListener
) -> None:
    first = feed_server.static("/first.xml", rss(ITEMS[:1]))
    config = write_config(tmp_path / "config.toml", [{"url": first}])
    daemon = await daemons.start(
        config, env={"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "200000"}
    )
    ready = await notify.wait("READY", "1", daemon=daemon)
    await notify.wait("WATCHDOG", "1", start=ready + 1, daemon=daemon)  # the watcher looked

    swap = tmp_path / "swap"
    swap.symlink_to("/dev/zero")
    swap.replace(config)
    zero = await daemon.wait_for("config.invalid")
    assert any("not a regular file" in e for e in daemon.events[zero]["errors"]), daemon.log()

    os.mkfifo(swap)
    swap.replace(config)
    daemon.proc.send_signal(signal.SIGHUP)  # and a SIGHUP on top: read the FIFO now
    fifo = await daemon.wait_for("config.invalid", start=zero + 1)
    assert any("not a regular file" in e for e in daemon.events[fifo]["errors"]), daemon.log()
    # The loop is not blocked: the watchdog still pings.
    mark = len(notify.datagrams)
    await notify.wait("WATCHDOG", "1", start=mark, daemon=daemon)

    added = feed_server.static("/added.xml", rss(ITEMS))
    config.unlink()
    write_config(config, [{"url": first}, {"url": added}])
    await daemon.wait_for("config.reloaded", start=fifo, added=1)
    await daemon.wait_for("fetch.completed", url=added, posts_new=2)
    assert daemon.find("task.crashed") is None, daemon.log()
    assert await daemon.stop() == 0, daemon.log()
    assert "Traceback" not in daemon.stderr.decode()


async def test_a_reload_while_the_database_is_write_locked_is_retried(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons, notify: NotifyListener
) -> None:
    first = feed_server.static("/first.xml", rss(ITEMS[:1]))
    config = write_config(tmp_path / "config.toml", [{"url": first}])
    daemon = await daemons.start(
        config, env={"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "200000"}
    )
    ready = await notify.wait("READY", "1", daemon=daemon)
    await daemon.wait_for("fetch.completed", url=first)
    await notify.wait("WATCHDOG", "1", start=ready + 1, daemon=daemon)

    blocker = sqlite3.connect(tmp_path / "rssd.sqlite3", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # longer than the daemon's busy_timeout (10 s)
        added = feed_server.static("/added.xml", rss(ITEMS))
        write_config(config, [{"url": first}, {"url": added}])
        failed = await daemon.wait_for("config.reload_failed", deadline=60)
        assert "locked" in daemon.events[failed]["error_message"], daemon.log()
    finally:
        blocker.rollback()
        blocker.close()
    # No further edit or signal: the pending reload is tried again and goes through.
    await daemon.wait_for("config.reloaded", start=failed, added=1, deadline=60)
    await daemon.wait_for("fetch.completed", url=added, posts_new=2)
    assert await daemon.stop() == 0, daemon.log()


async def test_supervised_work_is_restarted_after_any_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service_module, "RESTART_SECONDS", 0.0)
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise sqlite3.OperationalError("database is locked")
        if len(runs) == 2:
            raise KeyError("anything at all")

    async with asyncio.timeout(WAIT):
        await supervised("flaky", flaky)
    assert runs == [0, 1, 2]  # two crashes, then it ran to its end


async def test_a_task_that_dies_stops_the_watchdog_pings(
    feed_server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = feed_server.static("/a.xml", rss(ITEMS))
    config_path = write_config(tmp_path / "config.toml", [{"url": url}])
    async with notify_socket(str(tmp_path / "in-process.sock")) as listener:
        monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
        monkeypatch.setenv("WATCHDOG_USEC", "100000")
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        service = Service(config_path, load_config(config_path))
        running = asyncio.create_task(service.run())
        try:
            ready = await listener.wait("READY", "1")
            await listener.wait("WATCHDOG", "1", start=ready + 1)

            housekeeping = service.tasks["housekeeping"]
            housekeeping.cancel()  # dies for good: cancellation is not retried
            await asyncio.gather(housekeeping, return_exceptions=True)
            checks = service.watchdog_checks
            async with asyncio.timeout(WAIT):
                while service.watchdog_checks < checks + 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            mark = len(listener.datagrams)  # from here on every check sees the dead task
            async with asyncio.timeout(WAIT):
                while service.watchdog_checks < checks + 4:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0)  # let the listener take what was sent
            assert listener.find("WATCHDOG", "1", start=mark) is None, listener.raw
            assert not running.done()  # the daemon runs on; systemd restarts it
        finally:
            service.stop()
            async with asyncio.timeout(WAIT):
                await running
