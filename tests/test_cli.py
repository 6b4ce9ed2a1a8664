"""The ``rssd`` command line as an operator runs it: a real subprocess, real files.

``check-config`` and the config-path rule (``-c``, else ``$RSSD_CONFIG``, else
``./config.toml``). The cases are a table run concurrently: starting Python is the slow part.
"""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.process import Finished, run_rssd

pytestmark = pytest.mark.slow

GOOD = '# a comment\ndatabase = "a.sqlite3"\n[[feeds]]\nurl = "https://a.example/feed"\n'
OTHER = (
    'database = "/var/lib/rssd/b.sqlite3"\nmax_concurrency = 3\n'
    '[[feeds]]\nurl = "https://b.example/rss"\nname = "B"\n'
    '[[feeds]]\nurl = "https://c.example/atom"\nenabled = false\n'
)
BAD = (
    'max_concurency = 4\n[[feeds]]\nurl = "https://a.example/1"\n'
    '[[feeds]]\nurl = "ftp://b.example/1"\n'
)


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    cwd: str  # a folder under the test's tmp_path: good, other, bad, empty
    returncode: int
    stdout: list[str] = field(default_factory=list)  # regexes, each must match some line
    stderr: list[str] = field(default_factory=list)
    env_config: str | None = None  # $RSSD_CONFIG, relative to tmp_path
    quiet_stdout: bool = False
    quiet_stderr: bool = True


CASES = [
    Case(
        "flag",
        ["check-config", "-c", "../good/config.toml"],
        "empty",
        0,
        stdout=[
            r"^config: +.*/good/config\.toml$",
            r"^database: +.*/good/a\.sqlite3$",
            r"^feeds: +1 \(1 enabled\)$",
            r"https://a\.example/feed",
        ],
    ),
    Case(
        "environment",
        ["check-config"],
        "empty",
        0,
        stdout=[
            r"^config: +.*/other/other\.toml$",
            r"^database: +/var/lib/rssd/b\.sqlite3$",
            r"^feeds: +2 \(1 enabled\)$",
            r"max_concurrency=3",
            r"https://b\.example/rss .*B$",
            r"\(disabled\)$",
        ],
        env_config="other/other.toml",
    ),
    Case(
        "flag-beats-environment",
        ["check-config", "--config", "../good/config.toml"],
        "empty",
        0,
        stdout=[r"^config: +.*/good/config\.toml$"],
        env_config="other/other.toml",
    ),
    Case(
        "cwd-config-toml",
        ["check-config"],
        "good",
        0,
        stdout=[r"^config: +.*/good/config\.toml$", r"https://a\.example/feed"],
    ),
    Case(
        "errors-on-stderr",
        ["check-config", "-c", "config.toml"],
        "bad",
        1,
        stderr=[
            r"^config\.toml: max_concurency: unknown key \(did you mean 'max_concurrency'\?\)$",
            r"^config\.toml: feeds\[1\]\.url: URL must start with http:// or https://, "
            r"got 'ftp://b\.example/1' \(feed ftp://b\.example/1\)$",
        ],
        quiet_stdout=True,
        quiet_stderr=False,
    ),
    Case(
        "no-config-anywhere",
        ["check-config"],
        "empty",
        1,
        stderr=[r"^config\.toml: file not found$"],
        quiet_stdout=True,
        quiet_stderr=False,
    ),
    Case(
        "usage-error",
        ["check-config", "--no-such-flag"],
        "good",
        2,
        stderr=[r"unrecognized arguments: --no-such-flag"],
        quiet_stdout=True,
        quiet_stderr=False,
    ),
]


def environment(tmp_path: Path, case: Case) -> dict[str, str]:
    """What the case adds to the environment (support.process drops RSSD_CONFIG)."""
    if case.env_config is None:
        return {}
    return {"RSSD_CONFIG": str(tmp_path / case.env_config)}


def check(case: Case, result: Finished) -> None:
    where = (case.name, result.stdout, result.stderr)
    assert result.returncode == case.returncode, where
    out, err = result.stdout.splitlines(), result.stderr.splitlines()
    for pattern in case.stdout:
        assert any(re.search(pattern, line) for line in out), (pattern, *where)
    for pattern in case.stderr:
        assert any(re.search(pattern, line) for line in err), (pattern, *where)
    if case.quiet_stdout:
        assert result.stdout == "", where
    if case.quiet_stderr:
        assert result.stderr == "", where


def databases_in(folder: Path) -> list[Path]:
    return list(folder.rglob("*.sqlite3*"))


async def test_the_command_line(tmp_path: Path) -> None:
    for folder, name, text in [
        ("good", "config.toml", GOOD),
        ("other", "other.toml", OTHER),
        ("bad", "config.toml", BAD),
        ("empty", None, None),
    ]:
        (tmp_path / folder).mkdir()
        if name is not None and text is not None:
            (tmp_path / folder / name).write_text(text)

    results = await asyncio.gather(
        *(
            run_rssd(*case.args, cwd=tmp_path / case.cwd, env=environment(tmp_path, case))
            for case in CASES
        )
    )
    for case, result in zip(CASES, results, strict=True):
        check(case, result)
    assert not databases_in(tmp_path), "check-config never touches a database"


async def test_the_installed_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "rssd"
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable} (rssd not installed)")
    (tmp_path / "config.toml").write_text(GOOD)
    case = Case("console-script", ["check-config"], ".", 0, stdout=[r"^feeds: +1 \(1 enabled\)$"])
    finished = await run_rssd(
        argv=[str(script), *case.args], cwd=tmp_path, env=environment(tmp_path, case)
    )
    check(case, finished)
