"""bench/threads.py runs end to end on a tiny farm: each pass's CPU by thread, read from
rssd's own process (not from the measuring wrapper's: only rssd's has a database writer),
with the writer's thread named as such, and the pass's feeds/s. Behaviour only: no figure
is judged beyond being one."""

from __future__ import annotations

import pytest

from tests.support.bench import json_lines, load_bench

pytestmark = pytest.mark.slow


def test_each_pass_gets_its_threads_from_rssds_process() -> None:
    rows = json_lines(
        "threads.py", "--feeds", "12", "--hosts", "2", "--pairs", "1", "--latency-ms", "0", "--json"
    )
    assert [row["scenario"] for row in rows] == ["warm-304", "warm-all-304"]
    assert rows[0]["changed_feeds"] == 1 and rows[1]["changed_feeds"] == 0
    for row in rows:
        (times,) = row["passes"]
        assert times["main"] > 0 and times["writer"] > 0, times
        assert times["process"] >= times["main"] + times["writer"]
        assert row["feeds_per_second"][0] > 0


@pytest.mark.parametrize(
    ("warm", "quiet", "changed", "expected"),
    [
        ({"main": 1.5, "writer": 0.5}, {"main": 1.0, "writer": 0.5}, 100, {"main": (0.5, 5.0)}),
        ({"writer": 0.2}, {"main": 1.0, "writer": 0.1}, 0, {"main": (-1.0, 0.0)}),
    ],
)
def test_the_surcharge_is_by_thread_and_per_changed_feed(
    warm: dict[str, float],
    quiet: dict[str, float],
    changed: int,
    expected: dict[str, tuple[float, float]],
) -> None:
    threads = load_bench("threads")
    extra = threads.surcharge(warm, quiet, changed)
    assert set(extra) == set(warm) | set(quiet)
    for name, (plus, per_feed) in expected.items():
        assert extra[name] == pytest.approx((plus, per_feed))
    assert threads.medians([{"main": 1.0}, {"main": 3.0, "writer": 1.0}, {"main": 2.0}]) == {
        "main": 2.0,
        "writer": 0.0,
    }
