"""bench/statement_cost.py and bench/pool_handoff.py run end to end and print one figure
per way they measure. Behaviour only: no figure is judged beyond being one."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.bench import BENCH
from tests.support.postgres import ADMIN_URL, admin_connection

FIGURE = re.compile(r"^\s+(\d+\.\d) us\s+\S")


def _figures(script: str, *args: str) -> tuple[str, list[float]]:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    head, *lines = done.stdout.splitlines()
    figures = [float(m.group(1)) for line in lines if (m := FIGURE.match(line))]
    assert len(figures) == len(lines), done.stdout
    return head, figures


def test_statement_cost_times_the_five_ways() -> None:
    admin_connection().close()  # no server: skipped, or failed where it is required
    head, figures = _figures("statement_cost.py", "--postgres", ADMIN_URL, "--statements", "20")
    assert "cores" in head and "load average" in head
    assert len(figures) == 5 and all(figure >= 0 for figure in figures)


def test_pool_handoff_times_the_pools_and_the_pipe() -> None:
    head, figures = _figures("pool_handoff.py", "--documents", "5", "--gap-ms", "0")
    assert "cores" in head and "load average" in head
    assert len(figures) == 5 and all(figure >= 0 for figure in figures)
