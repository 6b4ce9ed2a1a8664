"""A CLI that answers at once (issue #16, item 4), checked without timing anything: each
command imports only what it needs (the modules loaded are listed, not timed; bench/
cli_speed.py has the figures), and every command whose reader goes away (``| head -1``)
exits 0 without a traceback."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from types import ModuleType

import pytest

from rssd import imports
from rssd.cli import COMMANDS, build_parser
from rssd.daemon.startup import file_mtime
from rssd.imports import import_without_collector
from rssd.models.config import load_config
from rssd.repo.config_sync import sync_config
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.support.probe import loaded, probe
from tests.support.process import WAIT

#: What no read-only command needs: the fetching, logging and metrics machinery.
FETCHING = {"aiohttp", "feedparser", "nh3", "structlog", "prometheus_client", "uvloop"}
#: rssd's own write path and daemon, which ``status`` and ``posts`` never need: they read
#: rows into plain DTOs (rssd/repo/rows.py), and of the daemon only the schedule's rules.
WRITE_PATH = (
    "rssd.repo.jobs",
    "rssd.repo.config_sync",
    "rssd.repo.claims",
    "rssd.repo.outbox",
    "rssd.repo.posts",
    "rssd.repo.seen",
    "rssd.repo.users",
    "rssd.fetch",
    "rssd.webhooks",
    "rssd.logs",
    "rssd.metrics",
)
DAEMON_RULES = {"rssd.daemon", "rssd.daemon.history", "rssd.daemon.schedule"}


def own_modules(*args: str | Path) -> tuple[int, set[str]]:
    """The exit code and rssd's own modules imported by ``rssd ARGS``."""
    report = probe(*args)
    return int(report["code"]), set(report["rssd"])


@pytest.fixture
def big_world(tmp_path: Path) -> Path:
    """3,000 feeds in config and database, one post each: output far beyond a pipe's
    64 KiB buffer, so a reader that leaves early surely finds rssd still writing."""
    config = tmp_path / "config.toml"
    config.write_text(
        'database = "rssd.sqlite3"\n'
        + "".join(
            f'[[feeds]]\nurl = "http://feeds{n}.example/feed"\nname = "Feed {n}"\n'
            for n in range(3000)
        )
    )

    async def fill() -> None:
        db = await open_database(load_config(config).database)
        try:
            await SourceRepo(db).sync(load_config(config))
        finally:
            await db.close()

    asyncio.run(fill())
    with closing(sqlite3.connect(tmp_path / "rssd.sqlite3")) as conn:
        conn.executemany(
            "INSERT INTO posts (content_source_id, external_id, title, url, created_at, "
            "content_hash) VALUES (?, ?, ?, ?, '2026-11-01T00:00:00.000Z', 'h')",
            [(n, f"g{n}", f"Post {n}", f"http://x.example/{n}") for n in range(1, 3001)],
        )
        conn.commit()
    return config


def test_version_and_help_import_nothing_but_the_parser() -> None:
    for args in (["--version"], ["--help"], ["posts", "--help"]):
        code, modules = loaded(*args)
        assert code == 0
        heavy = modules & (FETCHING | {"pydantic", "aiosqlite", "asyncio", "yarl"})
        assert not heavy, (args, heavy)


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["status", "--json"],
        ["posts", "--limit", "5"],
        ["posts", "--source", "Feed 7"],
        ["check-config"],
        ["export-opml"],
    ],
)
def test_read_only_commands_do_not_import_the_fetching_machinery(
    big_world: Path, args: list[str]
) -> None:
    code, modules = loaded(*args, "-c", big_world)
    assert code == 0
    assert not modules & FETCHING, modules & FETCHING


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["status", "--json"],
        ["status", "--failing"],
        ["posts", "--limit", "5"],
        ["posts", "--source", "Feed 7"],
        ["posts", "--source", "http://feeds7.example/feed"],
        ["posts", "--new"],
    ],
)
def test_status_and_posts_do_not_import_the_write_path_or_the_daemon(
    big_world: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(big_world.parent / "state"))  # --new's mark
    code, modules = own_modules(*args, "-c", big_world)
    assert code == 0
    writing = {m for m in modules if m.startswith(WRITE_PATH)}
    assert not writing, writing
    daemon = {m for m in modules if m.startswith("rssd.daemon")}
    assert daemon <= DAEMON_RULES, daemon - DAEMON_RULES


@pytest.mark.parametrize(
    "args",
    [["check-config"], ["status"], ["status", "--json"], ["posts", "--limit", "0"],
     ["posts", "--json", "--limit", "0"], ["export-opml"]],
)  # fmt: skip
def test_a_reader_that_leaves_early_is_not_an_error(big_world: Path, args: list[str]) -> None:
    """``rssd ARGS | head -1``: rssd exits 0, and nothing reaches stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rssd", *args, "-c", str(big_world)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert first.strip(), "the command printed something first"
    proc.stdout.close()  # head -1 is done
    try:
        code = proc.wait(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert code == 0, stderr
    assert stderr == "", stderr


def test_check_config_piped_to_head_in_a_shell(big_world: Path) -> None:
    """The issue's own reproduction, through a real shell pipeline."""
    script = 'set -o pipefail; "$0" -m rssd check-config -c "$1" | head -1'
    result = subprocess.run(
        ["bash", "-c", script, sys.executable, str(big_world)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config:")
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_status_and_posts_beside_the_synced_config_need_no_validation(tmp_path: Path) -> None:
    """The config the daemon validated and synced, unchanged since (its mtime is the
    recorded one): ``status`` and ``posts`` read the database without pydantic. Once the file
    changes, it is validated again, and a broken one shows its errors above that view."""
    config = tmp_path / "config.toml"
    config.write_text('database = "rssd.sqlite3"\n[[feeds]]\nurl = "http://a.example/feed"\n')

    async def sync() -> None:
        loaded_config = load_config(config)
        db = await open_database(loaded_config.database)
        try:
            await sync_config(
                db, loaded_config, file_mtime=file_mtime(config), daemon_id=None, guard=False
            )
        finally:
            await db.close()

    asyncio.run(sync())
    code, modules = loaded("status", "-c", config)
    assert code == 0
    assert "pydantic" not in modules
    for posts in (["posts"], ["posts", "--search", "word", "--source", "1"]):
        code, modules = loaded(*posts, "-c", config)
        assert (code, "pydantic" in modules) == (0, False), posts
    # A feed the database does not know: the hint needs the config, which is then read.
    code, modules = loaded("posts", "-c", config, "--source", "http://b.example/feed")
    assert (code, "pydantic" in modules) == (2, True)
    report = probe("status", "--json", "-c", config)
    assert report["code"] == 0
    config.write_text(config.read_text() + "max_concurency = 3\n")  # a typo, a newer mtime
    code, modules = loaded("status", "-c", config)
    assert "pydantic" in modules
    code, modules = loaded("posts", "-c", config)
    assert (code, "pydantic" in modules) == (1, True), "a broken config is reported, not used"
    finished = subprocess.run(
        [sys.executable, "-m", "rssd", "status", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert "max_concurency" in finished.stdout + finished.stderr
    assert "http://a.example/feed" in finished.stdout


def test_every_subcommand_is_one_registry_entry_that_resolves() -> None:
    """cli.COMMANDS names each subcommand's parser and its entry: the parser lists exactly
    the registry's commands, and every entry is a function of its module."""
    parser = build_parser()
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(subparsers.choices) == list(COMMANDS)
    for name, command in COMMANDS.items():
        module, _, function = command.entry.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name


def test_the_console_scripts_process_freezes_what_its_start_up_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``FREEZE_WHAT_LOADS`` (set by rssd/__main__.py only), what a paused block made
    is frozen at its end: the collector never scans it. Off, nothing is frozen: an
    in-process caller's heap (this test process's) is left alone."""
    (tmp_path / "rssd_freeze_probe.py").write_text("MADE = [[n] for n in range(1000)]\n")
    (tmp_path / "rssd_thaw_probe.py").write_text("MADE = [[n] for n in range(1000)]\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def frozen(module: ModuleType) -> bool:
        made = {id(item) for item in module.MADE}
        return not any(id(o) in made for o in gc.get_objects())

    try:
        thawed = import_without_collector("rssd_thaw_probe")
        assert not frozen(thawed)
        monkeypatch.setattr(imports, "FREEZE_WHAT_LOADS", True)
        assert frozen(import_without_collector("rssd_freeze_probe"))
    finally:
        gc.unfreeze()  # this test process's objects: back under the collector
        for name in ("rssd_freeze_probe", "rssd_thaw_probe"):
            sys.modules.pop(name, None)


def test_a_command_module_is_imported_with_the_collector_paused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector is off while the module runs, and back as it was afterwards."""
    (tmp_path / "rssd_gc_probe.py").write_text("import gc\nENABLED = gc.isenabled()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert gc.isenabled()
    probe = import_without_collector("rssd_gc_probe")
    assert probe.ENABLED is False
    assert gc.isenabled()
    sys.modules.pop("rssd_gc_probe")
    gc.disable()
    try:
        import_without_collector("rssd_gc_probe")
        assert not gc.isenabled()  # a caller that had paused it keeps it paused
    finally:
        gc.enable()
        sys.modules.pop("rssd_gc_probe", None)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ((700, 10, 10), (imports.YOUNG_THRESHOLD, 10, 10)),  # CPython's default: spaced out
        ((50_000, 5, 20), (50_000, 5, 20)),  # already further apart: left so
    ],
)
def test_the_daemon_settles_its_collector_after_start_up(
    before: tuple[int, int, int], after: tuple[int, int, int]
) -> None:
    """What start-up made is frozen; young collections come ``YOUNG_THRESHOLD`` apart."""
    saved = gc.get_threshold()
    made = [[n] for n in range(100)]
    gc.set_threshold(*before)
    try:
        imports.settle_collector()
        assert gc.get_threshold() == after
        assert not any(o is made[0] for o in gc.get_objects())  # frozen: never scanned
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


def test_a_run_once_process_runs_with_the_settled_collector(tmp_path: Path) -> None:
    """The daemon's own process, not an in-process call: after ``rssd run --once`` its
    collector's young threshold is ``YOUNG_THRESHOLD`` and start-up's objects are frozen."""
    config = tmp_path / "config.toml"
    config.write_text(f'database = "{tmp_path / "rssd.sqlite3"}"\n')
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('GC', *gc.get_threshold(), gc.get_freeze_count(),"
        " file=sys.stderr))\n"
        "from rssd.__main__ import main\n"
        "sys.argv = ['rssd', 'run', '--once', '-c', sys.argv[1]]\n"
        "raise SystemExit(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(config)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("GC "))
    young, middle, old, frozen = map(int, line.split()[1:])
    assert (young, middle, old) == (imports.YOUNG_THRESHOLD, 10, 10)
    assert frozen > 10_000  # the modules, pydantic's schemas, config.toml's models
