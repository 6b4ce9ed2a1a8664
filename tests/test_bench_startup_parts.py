"""bench/startup_parts.py runs end to end: every part of the start-up gets a figure per
run, each from a fresh interpreter. Behaviour only: no figure is judged beyond being one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bench import json_lines, load_bench

pytestmark = pytest.mark.slow

startup_parts = load_bench("startup_parts")


def test_every_part_gets_a_figure_per_run() -> None:
    rows = json_lines("startup_parts.py", "--feeds", "12", "--hosts", "2", "--runs", "2", "--json")
    names = [row["part"] for row in rows]
    assert names == [name for name, _, _ in startup_parts.PARTS] + [startup_parts.DATACLASS_PART]
    for row in rows:
        assert len(row["ms"]) == 2 and row["median_ms"] >= 0
    by_name = {row["part"]: row["median_ms"] for row in rows}
    # Importing the run's modules costs more than the interpreter alone: a figure that is
    # read where it is, not a constant.
    assert by_name["the run's imports"] > 0 and by_name["the interpreter and site"] > 0
    assert by_name[startup_parts.DATACLASS_PART] > 0


def test_the_config_it_validates_has_the_feeds_asked_for(tmp_path: Path) -> None:
    path = startup_parts.write_config(tmp_path, 5, 2)
    text = path.read_text()
    assert text.count("[[feeds]]") == 5
    assert "http://127.0.0.2:9/feeds/1" in text
