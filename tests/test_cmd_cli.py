"""``rssd --version`` and ``--help``: every command documented, each with an example."""

from __future__ import annotations

import pytest

from rssd import __version__
from tests.support.commands import cli_sync

COMMANDS = [
    "run",
    "check-config",
    "status",
    "fetch",
    "posts",
    "import-opml",
    "export-opml",
    "prune",
]


def test_version() -> None:
    result = cli_sync("--version")
    assert (result.code, result.out) == (0, f"rssd {__version__}\n")


def test_help_lists_every_command_examples_and_exit_codes() -> None:
    result = cli_sync("--help")
    assert result.code == 0
    for command in COMMANDS:
        assert f"\n    {command}" in result.out, command
    examples = result.out.split("examples:", 1)[1]
    for command in COMMANDS[2:]:
        assert f"rssd {command}" in examples, command
    assert "Exit codes:" in result.out


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help_with_an_example(command: str) -> None:
    result = cli_sync(command, "--help")
    assert result.code == 0
    assert f"usage: rssd {command}" in result.out
    assert "example" in result.out
    assert f"  rssd {command}" in result.out


def test_usage_errors_exit_2() -> None:
    assert cli_sync("fetch").code == 2  # FEED is required
    assert cli_sync("posts", "--limit", "-1").code == 2
    assert cli_sync("no-such-command").code == 2
