"""The suite's own measuring instrument (tests/support/process.py): a command's peak RSS is
its own, whatever the size of the test process that runs it."""

from __future__ import annotations

import sys

from tests.support.process import run_rssd

MIB = 1 << 20


async def test_the_peak_rss_is_the_commands_own_not_the_test_processs() -> None:
    ballast = b"\x01" * (300 * MIB)  # the test process, resident at 300 MiB more
    try:
        small = await run_rssd(argv=[sys.executable, "-c", "pass"])
        big = await run_rssd(argv=[sys.executable, "-c", "x = b'\\x01' * (150 << 20)"])
    finally:
        del ballast
    assert small.returncode == big.returncode == 0, (small.stderr, big.stderr)
    assert small.max_rss < 100 * MIB, small.max_rss / MIB
    assert 150 * MIB < big.max_rss < 250 * MIB, big.max_rss / MIB


async def test_a_command_killed_by_a_signal_is_seen_killed() -> None:
    finished = await run_rssd(
        argv=[sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"]
    )
    assert finished.returncode == -15
