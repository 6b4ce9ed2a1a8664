"""Interleaved runs: several checkouts of rssd and the bare client take turns on one farm,
round after round, and each one's CPU per check is reported as a median, and round by round
as a ratio to the bare client's and to the first tree's (``paired``).

    .venv/bin/python bench/interleave.py --rounds 6 /tmp/old-checkout .
    .venv/bin/python bench/interleave.py --scenario warm-304 --postgres \\
        postgresql://postgres@127.0.0.1:5432/postgres /tmp/old-checkout .

One run of bench/run.py moves by 3-5% between one minute and the next on a 2-core machine:
about what one change to rssd is worth (bench/README.md, "Sixth round"). Here each tree
meets the same farm (reset before every turn, so the same latencies are drawn) and about
the same load as the others, and the medians over the rounds tell a change from the noise.
Where the machine's own speed drifts from round to round (a shared virtual machine), the
medians keep the drift and the ratios taken within each round cancel it: "round by round"
gives their median and range.

Each TREE is a directory holding an ``rssd`` package: ``.``, or a ``git worktree add
/tmp/old-checkout COMMIT``. For its turns it goes first on PYTHONPATH, and it is byte-compiled
first (as bench/run.py does for the installed one). Each has a database of its own (SQLite,
or with ``--postgres`` a fresh database on that server, dropped at the end), warmed by one
cold pass. The figure is bench/run.py's ``main ms/chk``: the CPU time of the rssd (or bare)
process itself, its threads included, per feed checked.

``--scenario warm-all-304`` (default): every check is a 304. ``warm-304``: before round r,
the farm is brought to its r-th epoch, so each round ``--changed`` of the feeds have new
posts since the tree's previous turn.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import farm
from run import Bare, FarmProcess, PgDatabase, Rssd, Tool, machine

SCENARIOS = ("warm-all-304", "warm-304")


def checkout(path: str, tool: str) -> Path:
    """``path`` as a tree to measure (a directory holding an rssd package), byte-compiled
    (as bench/run.py compiles the installed one); else ``tool`` exits saying so."""
    tree = Path(path).resolve()
    if not (tree / "rssd" / "__init__.py").is_file():
        raise SystemExit(f"{tool}: {tree} holds no rssd package")
    compileall.compile_dir(tree / "rssd", quiet=1)
    return tree


@contextmanager
def first_on_path(*entries: Path | str | None) -> Iterator[None]:
    """``entries`` first on PYTHONPATH, in their order, for the processes started in the
    block (None and "" left out); PYTHONPATH as it was afterwards."""
    saved = os.environ.get("PYTHONPATH")
    search = [str(entry) for entry in entries if entry]
    if search:
        os.environ["PYTHONPATH"] = os.pathsep.join([*search, *filter(None, [saved])])
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def _turn(tool: Tool, tree: Path | None, scenario: str, feeds: int) -> tuple[float, float]:
    """One run of ``tool`` (with ``tree`` first on PYTHONPATH): its CPU ms per check, and
    feeds/s (feeds over the process's wall time, as run.py's)."""
    with first_on_path(tree):
        usage, _ = tool.run(scenario, feeds)
    wall = float(usage["wall_seconds"])
    return float(usage["main_cpu_seconds"]) * 1000 / feeds, feeds / wall if wall else 0.0


def _bring(server: FarmProcess, epochs: int, changed: float) -> None:
    server.call("/_reset")
    for _ in range(epochs):
        server.call(f"/_epoch?fraction={changed}")


def add_farm_arguments(parser: argparse.ArgumentParser) -> None:
    """The latency farm, rssd's limits and its backend: README's side-by-side command's
    values by default (bench/run.py's are for its zero-latency runs)."""
    parser.add_argument("--feeds", type=int, default=2000)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--latency-sigma", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-concurrency", type=int, default=500)
    parser.add_argument("--max-per-host", type=int, default=2)
    parser.add_argument("--postgres", metavar="SERVER_URL", help="rssd on PostgreSQL there")


def farm_of(args: argparse.Namespace) -> tuple[FarmProcess, dict[str, int]]:
    """The farm ``add_farm_arguments`` describes, started, and rssd's limits."""
    server = FarmProcess(
        args.feeds,
        args.items,
        args.hosts,
        False,
        (args.latency_ms, args.latency_sigma, args.seed),
    )
    return server, {"max_concurrency": args.max_concurrency, "max_per_host": args.max_per_host}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("trees", nargs="+", help="directories holding an rssd package")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--scenario", choices=SCENARIOS, default="warm-all-304")
    parser.add_argument("--changed", type=float, default=0.1, help="warm-304: new each round")
    add_farm_arguments(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per tool")
    args = parser.parse_args(argv)
    trees = [checkout(path, "interleave") for path in args.trees]
    load_at_start = round(os.getloadavg()[0], 2)
    workdir = Path(tempfile.mkdtemp(prefix="rssd-interleave-"))
    server, limits = farm_of(args)
    databases: list[PgDatabase] = []
    try:
        urls = [farm.feed_url(i, args.hosts, server.port) for i in range(args.feeds)]
        tools: list[tuple[str, Tool, Path | None]] = []
        for n, tree in enumerate(trees):
            (workdir / f"tree{n}").mkdir()
            postgres = None
            if args.postgres:
                postgres = PgDatabase(args.postgres, f"rssd_interleave_{uuid.uuid4().hex[:10]}")
                databases.append(postgres)
            rssd = Rssd(workdir / f"tree{n}", urls, workdir, limits, postgres=postgres)
            tools.append((f"{n}: {tree}", rssd, tree))
        (workdir / "bare").mkdir()
        tools.append(("bare", Bare(workdir / "bare", urls, dict(limits)), None))
        for _, tool, path in tools:  # each one's cold pass: its database and validators warm
            _bring(server, 0, args.changed)
            _turn(tool, path, "cold", args.feeds)
        figures: dict[str, list[float]] = {name: [] for name, _, _ in tools}
        speeds: dict[str, list[float]] = {name: [] for name, _, _ in tools}
        for round_ in range(1, args.rounds + 1):
            epochs = round_ if args.scenario == "warm-304" else 0
            # Every other round in the opposite order: a drift of the machine's load
            # within a round does not always favour the same tool.
            order = tools if round_ % 2 else tools[::-1]
            for name, tool, path in order:
                _bring(server, epochs, args.changed)
                cpu, speed = _turn(tool, path, args.scenario, args.feeds)
                figures[name].append(cpu)
                speeds[name].append(speed)
            if not args.json:
                shown = ", ".join(
                    f"{name.split(':')[0]} {figures[name][-1]:.3f}" for name in figures
                )
                print(f"round {round_}: ms per check: {shown}", flush=True)
        _report(figures, speeds, args, {**machine(), "load_at_start": load_at_start})
    finally:
        server.stop()
        for database in databases:
            database.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


@dataclass(frozen=True)
class Paired:
    """One tool's figures over another's, round by round: both were taken in the same round,
    so a drift of the machine's speed between rounds moves both and cancels out, where the
    ratio of two medians keeps it (the bare client read 0.37-0.53 ms a check within one
    run on a busy virtual machine)."""

    median: float
    low: float
    high: float

    def text(self) -> str:
        return f"{self.median:.3f} ({self.low:.3f}-{self.high:.3f})"


def paired(values: Sequence[float], reference: Sequence[float]) -> Paired | None:
    """The median, lowest and highest of ``values[r] / reference[r]`` over the rounds r
    (rounds whose reference is not positive left out; None when none is left)."""
    ratios = [value / ref for value, ref in zip(values, reference, strict=True) if ref > 0]
    if not ratios:
        return None
    return Paired(statistics.median(ratios), min(ratios), max(ratios))


def _report(
    figures: dict[str, list[float]],
    speeds: dict[str, list[float]],
    args: argparse.Namespace,
    host: dict[str, Any],
) -> None:
    """Per tool: CPU per check (median, minimum, the median's ratio to the bare client's)
    beside feeds/s (median, and its ratio to the bare client's), with the machine."""
    bare = statistics.median(figures["bare"])
    bare_speed = statistics.median(speeds["bare"])
    backend = "PostgreSQL" if args.postgres else "SQLite"
    if args.json:
        print(json.dumps({"machine": host, "scenario": args.scenario, "backend": backend}))
    else:
        print(
            f"{args.scenario}, {args.feeds} feeds on {args.hosts} hosts, {args.rounds} rounds, "
            f"rssd on {backend}; machine: {host['cpu_model']}, {host['cores']} cores, "
            f"load average {host['load_at_start']:.2f} at the start, "
            f"{host['load_avg'][0]:.2f} at the end"
        )
    first = next(iter(figures.values()))
    for n, (name, values) in enumerate(figures.items()):
        median = statistics.median(values)
        to_bare = paired(values, figures["bare"])
        to_first = paired(values, first) if n > 0 and name != "bare" else None
        row = {
            "tool": name,
            "ms_per_check_median": round(median, 3),
            "ms_per_check_min": round(min(values), 3),
            "ratio_to_bare": round(median / bare, 2) if bare else None,
            "feeds_per_second_median": round(statistics.median(speeds[name]), 1),
            "feeds_per_second_ratio_to_bare": (
                round(statistics.median(speeds[name]) / bare_speed, 2) if bare_speed else None
            ),
            "rounds": [round(value, 3) for value in values],
            "ratio_to_bare_by_round": asdict(to_bare) if to_bare else None,
            "ratio_to_first_tree_by_round": asdict(to_first) if to_first else None,
        }
        if args.json:
            print(json.dumps(row))
            continue
        print(
            f"  {name:40} CPU ms/check median {median:.3f} (min {min(values):.3f}), "
            f"{row['ratio_to_bare']}x the bare client's; feeds/s "
            f"{row['feeds_per_second_median']}, {row['feeds_per_second_ratio_to_bare']}x"
        )
        if name != "bare" and to_bare is not None:
            also = f"; over tree 0's {to_first.text()}" if to_first else ""
            print(f"  {'':40} round by round: over the bare client's {to_bare.text()}{also}")


if __name__ == "__main__":
    sys.exit(main())
