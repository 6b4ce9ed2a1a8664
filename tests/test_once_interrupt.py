"""SIGTERM/SIGINT during ``rssd run --once``: fetches recorded ``interrupted``, exit 128+N."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import FeedServer
from tests.support.config import write_config
from tests.support.process import WAIT, Daemons


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_interrupts_a_once_run_cleanly(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons, sig: signal.Signals
) -> None:
    arrived = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    url = feed_server.route("/hang", hang)
    config = write_config(tmp_path / "config.toml", [url])
    run = await daemons.spawn("run", "--once", "-c", config)
    try:
        async with asyncio.timeout(WAIT):
            await arrived.wait()
    except TimeoutError:
        pytest.fail(f"the feed was never requested\n{run.log()}")
    assert await run.stop(sig) == 128 + sig.value, run.log()
    interrupted = run.find("run.interrupted", signal=sig.name)
    assert interrupted is not None, run.log()
    with sqlite3.connect(tmp_path / "rssd.sqlite3") as db:
        rows = db.execute("SELECT status, error_code FROM fetch_job").fetchall()
    assert rows == [("FAILED", "interrupted")]
    assert (tmp_path / "rssd.sqlite3.lock").read_text().strip() == "clean"
