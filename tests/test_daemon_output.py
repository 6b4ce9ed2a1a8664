"""Every line ``rssd run`` and ``rssd run --once`` write is one JSON object, on stdout and
on stderr alike (issue #16, item 3): journald merges the two streams and operators read
them with jq. Failing starts, an all-304 run (which used to end with Python's
resource_tracker warning about leaked semaphores), and a debug run that shows rssd's
decisions rather than aiosqlite's statements. Real subprocesses, a loopback feed."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from rssd.daemon.lock import DaemonLock
from tests.conftest import FeedServer, rss
from tests.support.process import WAIT

ITEMS = [{"title": f"t{n}", "guid": f"g{n}", "link": f"http://example.org/{n}"} for n in range(3)]


async def rssd(*args: str | Path) -> tuple[int, str, str]:
    """``rssd ARGS`` as a process that ends by itself; its exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rssd", *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(WAIT):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def json_lines(stream: str, text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            pytest.fail(f"a line on {stream} is not JSON: {line!r}\n{text}")
        assert isinstance(event, dict), line
        assert {"timestamp", "level", "message", "logger"} <= set(event), line
        events.append(event)
    return events


def every_line_json(out: str, err: str) -> list[dict[str, Any]]:
    return json_lines("stdout", out) + json_lines("stderr", err)


def feed_config(folder: Path, url: str, extra: str = "") -> Path:
    folder.mkdir(exist_ok=True)
    config = folder / "config.toml"
    config.write_text(f'database = "rssd.sqlite3"\n{extra}\n[[feeds]]\nurl = "{url}"\n')
    return config


@pytest.mark.parametrize("mode", [("run", "--once"), ("run",)], ids=["once", "service"])
async def test_failing_starts_write_only_json(
    feed_server: FeedServer, tmp_path: Path, mode: tuple[str, ...]
) -> None:
    url = feed_server.static("/feed", rss(ITEMS))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.toml").write_text('max_concurency = 3\n[[feeds]]\nurl = "ftp://x"\n')
    locked = feed_config(tmp_path / "locked", url)
    no_folder = feed_config(tmp_path / "no-folder", url)
    (no_folder.parent / "state").write_text("a file where the database folder should be")
    no_folder.write_text(f'database = "state/rssd.sqlite3"\n[[feeds]]\nurl = "{url}"\n')
    cases = {
        "config.invalid": bad / "config.toml",
        "daemon.locked": locked,
        "database.unusable": no_folder,
    }
    with DaemonLock(locked.parent / "rssd.sqlite3"):
        for message, config in cases.items():
            code, out, err = await rssd(*mode, "-c", config)
            assert code == 1, (message, out, err)
            assert err == "", (message, err)
            events = every_line_json(out, err)
            assert [e["message"] for e in events if e["level"] == "error"] == [message], out
    missing = await rssd(*mode, "-c", tmp_path / "nowhere.toml")
    assert missing[0] == 1
    assert [e["message"] for e in every_line_json(*missing[1:])] == ["config.invalid"]
    assert feed_server.hits == {}


async def test_an_all_304_run_once_writes_only_json(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    urls = [
        feed_server.static(f"/feed{n}", rss(ITEMS, title=f"F{n}"), headers={"ETag": f'"v{n}"'})
        for n in range(3)
    ]
    config = tmp_path / "config.toml"
    config.write_text(
        'database = "rssd.sqlite3"\n' + "".join(f'[[feeds]]\nurl = "{u}"\n' for u in urls)
    )
    first = await rssd("run", "--once", "-c", config)
    assert first[0] == 0, first
    # The warning came at exit from runs that ended while the parse workers were still
    # starting: a 304-only run is quick. A few runs, each checked.
    for _ in range(3):
        code, out, err = await rssd("run", "--once", "-c", config)
        assert code == 0, err
        assert err == "", err
        events = every_line_json(out, err)
        (summary,) = [e for e in events if e["message"] == "run.summary"]
        assert summary["completed"] == 3
        outcomes = [e["outcome"] for e in events if e["message"] == "fetch.completed"]
        assert outcomes == ["not_modified"] * 3
        assert not [e for e in events if e["message"] == "daemon.threads_abandoned"], out


async def test_debug_shows_rssds_decisions_not_statement_chatter(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    url = feed_server.static("/feed", rss(ITEMS), headers={"ETag": '"v1"'})
    config = feed_config(tmp_path / "debug", url, 'log_level = "debug"')
    for _ in range(2):  # the second run is conditional
        code, out, err = await rssd("run", "--once", "-c", config)
        assert code == 0, err
    events = every_line_json(out, err)
    loggers = {e["logger"] for e in events}
    assert loggers <= {"rssd.daemon", "rssd.fetch", "rssd.parse"}, loggers
    debug = [e for e in events if e["level"] == "debug"]
    assert debug, out
    (started,) = [e for e in debug if e["message"] == "fetch.started"]
    assert started["conditional"] is True
    assert len(debug) <= len(events) // 2, out  # decisions, not the bulk of the log
