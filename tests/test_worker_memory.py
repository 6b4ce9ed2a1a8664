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
    feed_server: FeedServer, tmp_path: Path
) -> None:
    url = feed_server.static("/feed", rss([{"guid": "urn:1", "title": "t"}]))
    config = tmp_path / "config.toml"
    config.write_text(f'database = "{tmp_path / "rssd.sqlite3"}"\n[[feeds]]\nurl = "{url}"\n')
    proc = await asyncio.create_subprocess_exec(
        str(RSSD), "run", "-c", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        parsers: dict[int, str] = {}
        async with asyncio.timeout(30):
            while len(parsers) < 3 or not feed_server.hits.get("/feed"):  # forkserver + 2
                await asyncio.sleep(0.2)
                pids = await asyncio.to_thread(descendants, proc.pid)
                maps = {pid: await asyncio.to_thread(maps_of, pid) for pid in pids}
                parsers = {pid: text for pid, text in maps.items() if "nh3" in text}
        for pid, text in parsers.items():
            for library in ("pydantic_core", "aiohttp", "yarl", "multidict"):
                assert library not in text, f"{library} is loaded in parse process {pid}"
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await proc.wait()
