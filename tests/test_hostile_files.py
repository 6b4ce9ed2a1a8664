"""Issue 14.3 and 14.8: files rssd opens, and the crashes an operator saw.

Every case runs ``python -m rssd`` as its own process (what a shell runs), so "no
traceback" and "no hang" are about the real program: each must end with a clear message
on stderr and exit 1 or 2. Hang guards are generous deadlines, never timings.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.support.config import write_config
from tests.support.process import Finished, run_rssd

HOSTILE = FIXTURES / "hostile"


def said(result: Finished) -> str:
    """What a failure told the operator: stderr for the interactive commands; for ``rssd
    run``, which writes only JSON lines (issue #16), its error events, with stderr empty."""
    events = []
    for line in result.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("level") == "error":
            events.append(event)
    if not events:
        return result.stderr
    assert result.stderr == "", result.stderr
    return "\n".join(
        "\n".join([str(e.get("error_message", "")), *map(str, e.get("errors", []))]) for e in events
    )


def assert_clear_failure(result: Finished, *expected: str) -> None:
    assert result.returncode in (1, 2), result
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    message = said(result)
    for text in expected:
        assert text in message, message


# -- 3. the lock file -------------------------------------------------------------------------


async def test_a_symlinked_lock_file_clobbers_nothing(tmp_path: Path) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("precious data\n")
    config = write_config(tmp_path / "config.toml", [])
    (tmp_path / "rssd.sqlite3.lock").symlink_to(victim)
    result = await run_rssd("run", "-c", config, "--once")
    assert_clear_failure(result, "rssd.sqlite3.lock is a symbolic link")
    assert victim.read_text() == "precious data\n"


async def test_a_dangling_lock_symlink_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "created-by-rssd"
    target.parent.mkdir()
    config = write_config(tmp_path / "config.toml", [])
    (tmp_path / "rssd.sqlite3.lock").symlink_to(target)
    result = await run_rssd("run", "-c", config, "--once")
    assert_clear_failure(result, "symbolic link")
    assert not target.exists()


@pytest.mark.parametrize("kind", ["fifo", "directory"])
async def test_a_lock_file_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    config = write_config(tmp_path / "config.toml", [])
    lock = tmp_path / "rssd.sqlite3.lock"
    if kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    result = await run_rssd("run", "-c", config, "--once")
    assert_clear_failure(result, str(lock))


async def test_a_symlinked_wal_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    config = write_config(tmp_path / "config.toml", [])
    (tmp_path / "rssd.sqlite3-wal").symlink_to(victim)
    result = await run_rssd("run", "-c", config, "--once")
    assert_clear_failure(result, "rssd.sqlite3-wal: it is a symbolic link")
    assert victim.read_text() == "keep\n"


# -- 8. the database is not what it should be -------------------------------------------------


@pytest.mark.parametrize("command", [("status",), ("posts",), ("status", "--json"), ("prune",)])
async def test_a_file_that_is_not_sqlite(tmp_path: Path, command: tuple[str, ...]) -> None:
    config = write_config(tmp_path / "config.toml", [])
    shutil.copy(HOSTILE / "not-sqlite.bin", tmp_path / "rssd.sqlite3")
    result = await run_rssd(*command, "-c", config)
    assert_clear_failure(result, "rssd.sqlite3", "not a database")


async def test_run_on_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", [])
    shutil.copy(HOSTILE / "not-sqlite.bin", tmp_path / "rssd.sqlite3")
    result = await run_rssd("run", "-c", config, "--once")
    assert_clear_failure(result, "not a database")
    assert (tmp_path / "rssd.sqlite3").read_bytes() == (HOSTILE / "not-sqlite.bin").read_bytes()


@pytest.mark.parametrize("command", [("status",), ("posts",), ("fetch", "1"), ("run", "--once")])
async def test_a_fifo_database_does_not_hang(tmp_path: Path, command: tuple[str, ...]) -> None:
    config = write_config(tmp_path / "config.toml", [])
    os.mkfifo(tmp_path / "rssd.sqlite3")
    result = await run_rssd(command[0], "-c", config, *command[1:])
    assert_clear_failure(result, "rssd.sqlite3: it is a FIFO")


async def test_a_database_symlinked_to_an_empty_file_is_not_overwritten(tmp_path: Path) -> None:
    empty = tmp_path / "some-empty-file"
    empty.touch()
    config = write_config(tmp_path / "config.toml", [])
    (tmp_path / "rssd.sqlite3").symlink_to(empty)
    for command in (("run", "--once"), ("status",)):
        result = await run_rssd(command[0], "-c", config, *command[1:])
        assert_clear_failure(result, "is a symbolic link")
    assert empty.stat().st_size == 0


# -- 8. config.toml that is not what it should be ---------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("nested-arrays.toml", "nested too deeply"),
        ("nested-tables.toml", "nested too deeply"),
        ("url-crlf.toml", "control character U+000D"),
        ("url-crlf-host.toml", "control character U+000D"),
        ("url-port-0.toml", "port 0"),
    ],
)
@pytest.mark.parametrize("command", ["check-config", "status", "run"])
async def test_a_hostile_config_is_a_clear_error(
    tmp_path: Path, fixture: str, expected: str, command: str
) -> None:
    config = tmp_path / "config.toml"
    shutil.copy(HOSTILE / fixture, config)
    result = await run_rssd(command, "-c", config)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr + result.stdout
    assert expected in (result.stderr if command != "run" else result.stdout + result.stderr)
    assert not (tmp_path / "rssd.sqlite3").exists()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
async def test_a_config_that_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    config = tmp_path / "config.toml"
    if kind == "fifo":
        os.mkfifo(config)
    else:
        config.symlink_to("/dev/zero")
    result = await run_rssd("check-config", "-c", config)
    assert result.returncode == 1, result
    assert "not a regular file" in result.stderr
