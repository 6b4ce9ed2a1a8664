"""Hostile config.toml: every kind of invalid file at start-up (exit 1, a message naming the
key and the feed, no traceback, nothing started), values validation lets through that the
daemon cannot live with, and a running service fed broken edits (old config kept).

The validation rules themselves are unit-tested in test_config.py; here it is rssd's
behaviour as a process: ``python -m rssd ...`` subprocesses, run concurrently.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import FeedServer, rss
from tests.support.config import config_text, replace_file, write_config
from tests.support.process import Daemons, run_rssd
from tests.support.resilience import good_feed, read_results

URL = "http://127.0.0.1:9/feed"  # never fetched: these configs must not get that far

#: ``rssd.cli.main`` (what the ``rssd`` console script runs) over many argument lists in one
#: interpreter: one process start instead of one per config (each costs ~1 s of imports on
#: a loaded machine). Each call's exit code, stdout (the JSON log) and stderr are returned;
#: an exception escaping main is printed as the console script would (a traceback).
DRIVER = """
import contextlib, io, json, sys, traceback
import rssd.cli
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = rssd.cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
print(json.dumps(results))
"""


@dataclass(frozen=True)
class Exit:
    code: int
    stdout: str
    stderr: str


def said(stdout: str, stderr: str) -> str:
    """What a start-up refusal told the operator. ``rssd run`` writes only JSON lines, so
    its error events, as the plain lines they replace (``FILE: error``, ``rssd: ...``),
    plus whatever reached stderr (which must be nothing)."""
    lines = [stderr] if stderr else []
    for line in stdout.splitlines():
        event = json.loads(line)
        if event.get("level") != "error":
            continue
        if event["message"] == "config.invalid":
            lines += [f"{event['path']}: {error}" for error in event["errors"]]
        else:
            lines.append(f"rssd: {event.get('error_message', '')}")
    return "\n".join(lines)


async def rssd_main_each(argvs: list[list[str]], cwd: Path | None = None) -> list[Exit]:
    """``rssd ARGV`` for each argument list, in one subprocess (see DRIVER)."""
    finished = await run_rssd(
        argv=[sys.executable, "-c", DRIVER, json.dumps(argvs)], timeout=240, cwd=cwd
    )
    assert not finished.timed_out and finished.returncode == 0, finished
    return [Exit(r["code"], r["stdout"], r["stderr"]) for r in json.loads(finished.stdout)]


@dataclass(frozen=True)
class Bad:
    text: str | bytes | None  # None: no file at all
    expect: tuple[str, ...]  # fragments the message must contain


INVALID: dict[str, Bad] = {
    "TOML syntax error": Bad("interval_minutes = \n", ("TOML syntax error",)),
    "unknown top-level key": Bad(
        "max_concurency = 5\n", ("max_concurency: unknown key", "did you mean 'max_concurrency'")
    ),
    "unknown feed key": Bad(
        f'[[feeds]]\nurl = "{URL}"\nintervl_minutes = 5\n',
        ("feeds[0].intervl_minutes: unknown key", f"(feed {URL})"),
    ),
    "wrong type": Bad('interval_minutes = "hourly"\n', ("interval_minutes",)),
    "bool for a number": Bad("max_concurrency = true\n", ("max_concurrency",)),
    "zero interval on a feed": Bad(
        f'[[feeds]]\nurl = "{URL}"\ninterval_minutes = 0\n',
        ("feeds[0].interval_minutes", "greater than 0", f"(feed {URL})"),
    ),
    "negative timeout": Bad("timeout_seconds = -1\n", ("timeout_seconds", "greater than 0")),
    "nan": Bad("timeout_seconds = nan\n", ("timeout_seconds",)),
    "bad log level": Bad('log_level = "verbose"\n', ("log_level",)),
    "duplicate url": Bad(
        f'[[feeds]]\nurl = "{URL}"\n[[feeds]]\nurl = "{URL}"\n',
        ("duplicate url",),
    ),
    "duplicate url, host case differs": Bad(
        '[[feeds]]\nurl = "http://Example.ORG/feed"\n[[feeds]]\nurl = "HTTP://example.org/feed"\n',
        ("duplicate url",),
    ),
    "file: url": Bad(
        '[[feeds]]\nurl = "file:///etc/passwd"\n', ("feeds[0].url", "http:// or https://")
    ),
    "url without host": Bad('[[feeds]]\nurl = "http://"\n', ("feeds[0].url",)),
    "feed without url": Bad('[[feeds]]\nname = "x"\n', ("feeds[0].url", "required key")),
    "feeds not tables": Bad('feeds = "all of them"\n', ("feeds",)),
    "empty database path": Bad('database = ""\n', ("database",)),
    "not UTF-8": Bad(b'name = "\xff\xfe"\n', ("cannot read",)),
    "no such file": Bad(None, ("file not found",)),
}


def _folder(tmp_path: Path, case: str) -> Path:
    return tmp_path / "".join(c if c.isalnum() else "-" for c in case)


async def test_every_kind_of_invalid_config_stops_start_up_clearly(tmp_path: Path) -> None:
    argvs = []
    for case, bad in INVALID.items():
        folder = _folder(tmp_path, case)
        folder.mkdir()
        config = folder / "config.toml"
        if isinstance(bad.text, bytes):
            config.write_bytes(bad.text)
        elif bad.text is not None:
            config.write_text(bad.text)
        argvs.append(["run", "--once", "-c", str(config)])
    results = await rssd_main_each(argvs)
    problems = []
    for (case, bad), finished in zip(INVALID.items(), results, strict=True):
        folder = _folder(tmp_path, case)
        message = said(finished.stdout, finished.stderr)
        if finished.stderr:
            problems.append(f"{case}: not JSON, on stderr: {finished.stderr!r}")
        if finished.code != 1 or "Traceback" in message:
            problems.append(f"{case}: exit {finished.code}\n{message}")
        elif not all(fragment in message for fragment in bad.expect):
            problems.append(f"{case}: message lacks {bad.expect}: {message!r}")
        elif "config.toml" not in message:
            problems.append(f"{case}: message does not name the file: {message!r}")
        elif any(path.name.startswith("rssd.sqlite3") for path in folder.iterdir()):
            problems.append(f"{case}: a database was created for an invalid config")
        events = [json.loads(line) for line in finished.stdout.splitlines() if line.strip()]
        if [e["message"] for e in events] != ["config.invalid"]:
            problems.append(f"{case}: log is not one config.invalid event: {events}")
    assert not problems, "\n\n".join(problems)


async def test_unusable_databases_stop_start_up_clearly(tmp_path: Path) -> None:
    """Start-up problems past validation: the database path is a folder, or not SQLite."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "rssd.sqlite3").mkdir()
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "rssd.sqlite3").write_bytes(b"this is not a database\n" * 100)
    argvs = []
    for case in ("folder", "garbage"):
        config = write_config(tmp_path / case / "config.toml", [URL])
        argvs.append(["run", "--once", "-c", str(config)])
    for finished in await rssd_main_each(argvs):
        assert finished.code == 1, finished
        assert finished.stderr == "", finished.stderr
        assert "rssd.sqlite3" in said(finished.stdout, finished.stderr), finished.stdout
    assert (tmp_path / "garbage" / "rssd.sqlite3").read_bytes().startswith(b"this is not")


# -- values validation accepts that the daemon cannot live with -----------------------------

#: Values that once passed validation and then broke the daemon; each is refused now.
ABSURD: dict[str, str] = {
    "timeout_seconds = inf": "timeout_seconds = inf",
    "shutdown_grace_seconds = inf": "shutdown_grace_seconds = inf",
    "interval_minutes beyond SQLite's integers": "interval_minutes = 99999999999999999999",
    "max_body_mb = inf": "max_body_mb = inf",
    "parse_timeout_seconds = inf": "parse_timeout_seconds = inf",
    "user_agent with CR LF": 'user_agent = "rssd\\r\\nX-Injected: 1"',
}


@dataclass(frozen=True)
class Outcome:
    finished: Exit
    job: Any  # the good feed's latest job, if the run got that far


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def absurd_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[dict[str, Outcome]]:
    server = FeedServer()
    await server.start()
    try:
        url = good_feed(server)
        base = tmp_path_factory.mktemp("absurd")
        configs = {}
        for index, (case, line) in enumerate(ABSURD.items()):
            folder = base / f"case{index}"
            folder.mkdir()
            configs[case] = folder / "config.toml"
            configs[case].write_text(
                f'database = "rssd.sqlite3"\n{line}\n[[feeds]]\nurl = "{url}"\n'
            )
        finished = await rssd_main_each([["run", "--once", "-c", str(p)] for p in configs.values()])
        outcomes = {}
        for (case, path), done in zip(configs.items(), finished, strict=True):
            database = path.parent / "rssd.sqlite3"
            job = None
            with contextlib.suppress(Exception):
                job = read_results(database).job(url)
            outcomes[case] = Outcome(done, job)
        yield outcomes
    finally:
        await server.stop()


@pytest.mark.parametrize("case", list(ABSURD))
def test_a_value_the_daemon_cannot_live_with_is_refused_at_start_up(
    absurd_runs: dict[str, Outcome], case: str
) -> None:
    """Refused at start-up (exit 1) with a message naming the key, no traceback, and no
    fetch: never accepted and then failing every feed."""
    outcome = absurd_runs[case]
    finished = outcome.finished
    assert "Traceback" not in finished.stderr, finished.stderr
    assert finished.code == 1, finished
    key = case.split(maxsplit=1)[0]
    message = said(finished.stdout, finished.stderr)
    assert key in message, message  # refused, saying which key
    assert outcome.job is None, outcome.job


async def test_keep_fetch_jobs_days_forever(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", [URL], keep_fetch_jobs_days=999999)
    finished = await run_rssd("prune", "-c", config)
    assert "Traceback" not in finished.stderr, finished.stderr
    assert finished.returncode == 0 or "keep_fetch_jobs_days" in finished.stderr


# -- reload: a running service fed broken edits ---------------------------------------------


RELOAD_BREAKAGES: dict[str, str | bytes] = {
    "TOML syntax error": "[[feeds]\nurl = ",
    "unknown key": "max_concurency = 4\n",
    "non-http url": '[[feeds]]\nurl = "ftp://example.org/feed"\n',
    "duplicate url": "",  # filled in below: the running feed listed twice
    "not UTF-8": b"\xff\xfe\x00",
}


@pytest.mark.slow
async def test_broken_edits_keep_the_old_config_running(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons
) -> None:
    """Each broken edit: ``config.invalid``, the daemon still up with the old config. A
    vanished file (SIGHUP while it is missing) too. Then a fixed edit adding a feed is
    applied relative to the old config (added=1) and the new feed is fetched."""
    first = good_feed(feed_server, "/first")
    second = feed_server.static("/second", rss([{"title": "second", "guid": "urn:second"}]))
    valid = config_text([first], database="rssd.sqlite3", interval_minutes=1)
    config = write_config(tmp_path / "config.toml", [first], interval_minutes=1)
    breakages = dict(RELOAD_BREAKAGES)
    breakages["duplicate url"] = config_text([first])
    service = await daemons.start(config)
    mark = await service.wait_for("fetch.completed", url=first)
    for case, text in breakages.items():
        replace_file(config, text if isinstance(text, bytes) else valid + text)
        mark = await service.wait_for("config.invalid", start=mark + 1)
        errors = " ".join(service.events[mark].get("errors") or [])
        assert errors, (case, service.events[mark])
    config.unlink()
    assert service.proc.returncode is None
    service.proc.send_signal(signal.SIGHUP)
    mark = await service.wait_for("config.invalid", start=mark + 1)
    assert "file not found" in " ".join(service.events[mark]["errors"])
    assert not any(e.get("message") == "config.reloaded" for e in service.events)
    write_config(config, [first, second], interval_minutes=1)
    mark = await service.wait_for("config.reloaded", start=mark + 1, added=1, disabled=0)
    await service.wait_for("fetch.completed", start=mark, url=second)
    assert await service.stop() == 0, service.log()
    result = read_results(tmp_path / "rssd.sqlite3")
    result.assert_completed(second, 1)
    result.assert_good(first)


async def test_a_huge_interval_is_refused_before_the_service_starts(tmp_path: Path) -> None:
    """interval_minutes = 2**63 - 1 fits SQLite but not a timedelta: refused at start with
    the key named (it used to pass validation and kill the daemon with a traceback)."""
    config = write_config(tmp_path / "config.toml", [URL], interval_minutes=9223372036854775807)
    finished = await run_rssd("run", "-c", config)
    assert finished.returncode == 1
    assert finished.stderr == "", finished.stderr
    assert "interval_minutes" in said(finished.stdout, finished.stderr)
