"""SIGTERM/SIGINT during ``rssd run --once``: fetches recorded ``interrupted``, exit 128+N."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import FeedServer


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_interrupts_a_once_run_cleanly(
    feed_server: FeedServer, tmp_path: Path, sig: signal.Signals
) -> None:
    arrived = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        arrived.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    url = feed_server.route("/hang", hang)
    config = tmp_path / "config.toml"
    config.write_text(f'database = "rssd.sqlite3"\n[[feeds]]\nurl = "{url}"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rssd", "run", "--once", "-c", str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            await arrived.wait()
            proc.send_signal(sig)
            stdout, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 128 + sig.value
    events = [json.loads(line) for line in stdout.decode().splitlines()]
    assert {"message": "run.interrupted", "signal": sig.name}.items() <= next(
        e for e in events if e["message"] == "run.interrupted"
    ).items()
    with sqlite3.connect(tmp_path / "rssd.sqlite3") as db:
        rows = db.execute("SELECT status, error_code FROM fetch_job").fetchall()
    assert rows == [("FAILED", "interrupted")]
    assert (tmp_path / "rssd.sqlite3.lock").read_text().strip() == "clean"
