"""bench/startup.py runs end to end on a tiny farm: each tree and the bare client are
stopped at their first request, every run, with the CPU they spent until then. Behaviour
only: no figure is judged beyond being one. (A directory without rssd is refused: with
interleave.py's, in tests/test_bench_interleave.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bench import json_lines

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_each_tree_and_the_bare_client_get_a_figure_per_run() -> None:
    rows = json_lines(
        "startup.py", "--feeds", "12", "--hosts", "2", "--runs", "2", "--json", str(ROOT)
    )
    assert [row["tool"].split(":")[0] for row in rows] == ["0", "bare"]
    for row in rows:
        assert len(row["cpu_ms_to_first_request"]) == 2
        assert all(value > 0 for value in row["cpu_ms_to_first_request"])
