"""The parse workers of a real ``rssd run`` (the console script, as systemd starts it) do
not load the daemon's libraries: multiprocessing runs the main script again in every worker
to prepare it, and a script that imported rssd.cli put aiohttp and pydantic (~16 MB of RSS)
into each of the forkserver and the workers."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import FeedServer, rss
from tests.support.config import write_config
from tests.support.process import WAIT, Daemons

RSSD = Path(sys.executable).with_name("rssd")


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def maps_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.skipif(not RSSD.exists(), reason="the rssd console script is not installed")
async def test_parse_workers_of_the_console_script_stay_small(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons
) -> None:
    url = feed_server.static("/feed", rss([{"guid": "urn:1", "title": "t"}]))
    config = write_config(tmp_path / "config.toml", [url])
    daemon = await daemons.spawn(argv=[str(RSSD), "run", "-c", str(config)], cwd=tmp_path)
    parsers: dict[int, str] = {}
    async with asyncio.timeout(WAIT):  # a hang guard
        while len(parsers) < 3 or not feed_server.hits.get("/feed"):  # forkserver + 2
            await asyncio.sleep(0.2)  # other processes' state: polled
            pids = await asyncio.to_thread(descendants, daemon.pid)
            maps = {pid: await asyncio.to_thread(maps_of, pid) for pid in pids}
            parsers = {pid: text for pid, text in maps.items() if "nh3" in text}
    for pid, text in parsers.items():
        for library in ("pydantic_core", "aiohttp", "yarl", "multidict"):
            assert library not in text, f"{library} is loaded in parse process {pid}"
    assert await daemon.stop(signal.SIGTERM) == 0, daemon.log()
