"""bench/run.py's ``--repeat``: the repeated warm scenarios find the farm where every tool's
database left it, and the table gives each tool's median pass. Behaviour only: no figure is
judged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.bench import BENCH, load_bench

run = load_bench("run")


def figures(tool: str, scenario: str, main_cpu_seconds: float) -> object:
    return run.Figures(
        tool=tool, scenario=scenario, feeds=1000, wall_seconds=1.0, cpu_seconds=1.0,
        main_cpu_seconds=main_cpu_seconds, peak_tree_rss_mb=1.0, peak_tree_pss_mb=1.0,
        peak_process_rss_mb=1.0, processes=1, posts=0, db_bytes=0, loop_lag_max_ms=None,
        failed=0, tool_seconds=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("seconds", "chosen"),
    [
        ([0.7], 0.7),
        ([0.9, 0.7, 0.8], 0.8),
        ([0.9, 0.7, 0.8, 1.0], 0.8),  # an even count: the lower of the middle two
        ([0.5, 0.5, 0.9], 0.5),
    ],
)
def test_the_median_pass_is_one_real_pass(seconds: list[float], chosen: float) -> None:
    passes = [figures("rssd", "warm-304", s) for s in seconds]
    passes.append(figures("bare", "warm-304", 0.3))
    medians = run.median_passes(passes)
    by_tool = {f.tool: f for f in medians}
    assert len(medians) == 2
    assert by_tool["rssd"].main_cpu_seconds == chosen
    assert any(by_tool["rssd"] is p for p in passes)


@pytest.mark.slow
def test_repeated_passes_each_find_the_farm_where_the_database_left_it(tmp_path: Path) -> None:
    """Two rounds of warm-304 then two of warm-all-304: each warm-304 pass sees its share
    of changed feeds (the farm moved on one epoch for it) and every warm-all-304 pass is
    answered 304 throughout (the farm where the last warm-304 left each database)."""
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable, str(BENCH / "run.py"), "--feeds", "20", "--hosts", "2",
            "--tools", "bare,rssd", "--scenarios", "cold,warm-304,warm-all-304",
            "--changed", "0.25", "--repeat", "2", "--json", str(out),
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warm-304, main ms/chk round by round:" in done.stdout
    assert "rssd/bare round by round: median" in done.stdout
    data = json.loads(out.read_text())
    assert data["repeat"] == 2
    passes = [(p["tool"], p["scenario"]) for p in data["passes"]]
    assert (
        passes
        == [("bare", "warm-304"), ("rssd", "warm-304")] * 2
        + [
            ("bare", "warm-all-304"),
            ("rssd", "warm-all-304"),
        ]
        * 2
    )
    for one in data["passes"]:
        changed = 5 if one["scenario"] == "warm-304" else 0
        assert (one["farm"]["200"], one["farm"]["304"]) == (changed, 20 - changed), one
    results = {(r["tool"], r["scenario"]): r for r in data["results"]}
    assert len(results) == 6  # one median pass per tool and scenario
