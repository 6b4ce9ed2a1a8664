"""bench/interleave.py runs end to end on a tiny farm: each tree and the bare client take
their turns, and a figure comes back for every round. Behaviour only: no figure is judged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.bench import BENCH, json_lines, load_bench

interleave = load_bench("interleave")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_trees_and_the_bare_client_each_get_a_figure_per_round(tmp_path: Path) -> None:
    lines = json_lines(
        "interleave.py", "--feeds", "12", "--hosts", "2", "--latency-ms", "0", "--rounds", "2",
        "--scenario", "warm-304", "--json", str(ROOT), str(ROOT),
    )  # fmt: skip
    assert lines[0]["scenario"] == "warm-304" and lines[0]["backend"] == "SQLite"
    rows = lines[1:]
    assert [row["tool"].split(":")[0] for row in rows] == ["0", "1", "bare"]
    for row in rows:
        assert len(row["rounds"]) == 2 and all(value > 0 for value in row["rounds"])
        assert row["feeds_per_second_median"] > 0
    assert rows[2]["ratio_to_bare"] == 1.0
    # Round by round: each tree over the bare client; the second tree over the first.
    assert rows[0]["ratio_to_first_tree_by_round"] is None
    assert rows[1]["ratio_to_first_tree_by_round"]["median"] > 0
    assert rows[2]["ratio_to_bare_by_round"] == {"median": 1.0, "low": 1.0, "high": 1.0}


@pytest.mark.parametrize(
    ("values", "reference", "expected"),
    [
        # A machine twice as fast in round 2: the medians' ratio reads 1.5 / 0.75 = 2.0 for
        # a tool that is 2.0x in every round; so do the ratios round by round.
        ([2.0, 1.0, 1.5], [1.0, 0.5, 0.75], (2.0, 2.0, 2.0)),
        # A drift the medians keep: the tool is 10% cheaper in two rounds of three and 5% in
        # the third, the slowest; the medians' ratio reads 1.9 / 2.0 = 0.95.
        ([0.9, 1.9, 2.7], [1.0, 2.0, 3.0], (0.9, 0.9, 0.95)),
        ([1.0, 3.0, 2.0, 4.0], [1.0, 1.0, 1.0, 1.0], (2.5, 1.0, 4.0)),
        ([1.0, 2.0], [0.0, 1.0], (2.0, 2.0, 2.0)),  # a round without a reference: left out
        ([1.0], [0.0], None),
    ],
)
def test_ratios_round_by_round(
    values: list[float], reference: list[float], expected: tuple[float, float, float] | None
) -> None:
    got = interleave.paired(values, reference)
    if expected is None:
        assert got is None
    else:
        assert (got.median, got.low, got.high) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("entries", "saved", "inside"),
    [
        (("/t",), None, "/t"),
        (("/t", "/hook"), "/pre", f"/t{os.pathsep}/hook{os.pathsep}/pre"),
        ((None, "", "/hook"), None, "/hook"),  # the bare client has no tree
        ((None,), "/pre", "/pre"),
        ((), None, None),
    ],
)
def test_entries_go_first_on_pythonpath_for_the_block(
    monkeypatch: pytest.MonkeyPatch,
    entries: tuple[str | None, ...],
    saved: str | None,
    inside: str | None,
) -> None:
    if saved is None:
        monkeypatch.delenv("PYTHONPATH", raising=False)
    else:
        monkeypatch.setenv("PYTHONPATH", saved)
    with interleave.first_on_path(*entries):
        assert os.environ.get("PYTHONPATH") == inside
    assert os.environ.get("PYTHONPATH") == saved


@pytest.mark.slow
@pytest.mark.parametrize("script", ["interleave.py", "startup.py"])
def test_a_directory_without_rssd_is_refused(tmp_path: Path, script: str) -> None:
    """Both tools that take rssd checkouts (bench/startup.py's own test is beside it)."""
    done = subprocess.run(
        [sys.executable, str(BENCH / script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "holds no rssd package" in done.stderr
