"""sd_notify never blocks the event loop (issue #16, item 1). A NOTIFY_SOCKET whose reader
never reads: its queue fills, and a blocking send would hold the daemon's loop until
someone read (forever, here). The datagrams that do not fit are dropped and counted."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rssd.daemon import notify
from tests.conftest import FeedServer, rss
from tests.support.config import replace_file, write_config
from tests.support.process import WAIT, Daemons
from tests.test_metrics import read_metrics, value

pytestmark = pytest.mark.slow

ITEMS = [{"title": f"t{n}", "guid": f"g{n}", "link": f"http://e.org/{n}"} for n in range(3)]


@pytest.fixture
def unread_socket(tmp_path: Path) -> Iterator[str]:
    """A bound datagram socket nobody reads: systemd stuck, or its queue full."""
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    try:
        yield address
    finally:
        sock.close()


def test_a_full_socket_drops_and_counts_instead_of_blocking(unread_socket: str) -> None:
    environ = {"NOTIFY_SOCKET": unread_socket}
    results: list[bool] = []
    before = notify.dropped()

    def send_many() -> None:
        results.extend(notify.notify(f"STATUS=message {n}", environ) for n in range(2000))

    sender = threading.Thread(target=send_many, daemon=True)
    sender.start()
    sender.join(WAIT)  # a hang guard: a blocking send would never return
    assert not sender.is_alive(), "notify() blocked on a socket nobody reads"
    assert results[0] is True  # the queue had room at first
    dropped = results.count(False)
    assert dropped > 0  # 2,000 datagrams never fit in a queue nobody drains
    assert notify.dropped() - before == dropped


def test_no_socket_at_all_is_not_an_error() -> None:
    assert notify.notify("READY=1", {}) is False


async def test_the_daemon_fetches_and_reloads_while_nobody_reads_its_notify_socket(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons, unread_socket: str
) -> None:
    first = feed_server.static("/first", rss(ITEMS))
    second = feed_server.static("/second", rss(ITEMS, title="second"))
    config = write_config(tmp_path / "config.toml", [{"url": first}], metrics_file="rssd.prom")
    # WATCHDOG=1 every 10 ms on top of READY/STATUS/RELOADING: the queue is full at once.
    env = {"NOTIFY_SOCKET": unread_socket, "WATCHDOG_USEC": "20000"}
    daemon = await daemons.start(config, env=env)
    await daemon.wait_for("daemon.ready")
    await daemon.wait_for("fetch.completed", url=first)
    dropped = await daemon.wait_for("notify.dropped")
    # A feed added to config.toml now is fetched within seconds, not after the reader wakes.
    replace_file(config, config.read_text() + f'\n[[feeds]]\nurl = "{second}"\n')
    reloaded = await daemon.wait_for("config.reloaded", start=dropped)
    await daemon.wait_for("fetch.completed", start=reloaded, url=second)
    assert await daemon.stop() == 0, daemon.log()

    warnings = daemon.all("notify.dropped")
    assert len(warnings) == 1, "one warning a minute, not one per datagram"
    assert warnings[0]["level"] == "warning"
    samples = await asyncio.to_thread(read_metrics, tmp_path / "rssd.prom")
    assert value(samples, "rssd_notify_dropped_total") > 1
    assert value(samples, "rssd_fetches_total", outcome="parsed", error_code="") == 2
    assert value(samples, "rssd_sources", state="ok") == 2
    assert value(samples, "rssd_fetches_in_flight") == 0
    # The loop kept turning all along: a blocking send would have stalled it until the
    # reader read (here, for ever; in the field ~30 s), and the waits above would have hit
    # their hang guard. How late the lag probe woke is a timing (bench/, and
    # rssd_event_loop_lag_seconds in production), not something a test asserts.
    assert value(samples, "rssd_event_loop_lag_seconds_count") > 0
