"""Where a pass's CPU goes, thread by thread: warm-304 and warm-all-304 passes in pairs on
one database, and what the changed feeds add.

    .venv/bin/python bench/threads.py --pairs 3
    .venv/bin/python bench/threads.py --pairs 3 --postgres postgresql://postgres@127.0.0.1:5432/postgres

bench/run.py gives a pass's CPU for the whole process; a process of several threads (the
event loop, the database writer, the parse pool's manager and feeder, aiosqlite's reader)
needs more to say where a change would pay. After one cold pass, each pair runs a warm-304
pass (the farm at the next epoch: ``--changed`` of the feeds gained posts) and then a
warm-all-304 pass at the same epoch, so the difference between the two is what the
changed feeds cost, thread by thread. Each pass runs ``rssd run --once`` with a hook on
PYTHONPATH (a ``sitecustomize``) that reads every thread's CPU clock as it ends
(``Thread.run``, and the process pool's manager thread, whose class has its own ``run``),
the live ones' at exit (``pthread_getcpuclockid``), and the process's, and writes them to
a file per process. The threads' sum falls short of the process's by what ended unseen
(``other``). There is no bare client here: seconds compare within one run only (for the
ratio to the bare client's CPU per check, run.py and interleave.py).

Medians over the pairs, and each scenario's feeds/s (feeds over the process's wall time);
``--json`` prints one object per scenario with every pair's figures. The rssd measured is
the one importable here (``--tree`` puts a checkout first on PYTHONPATH, as
interleave.py's trees).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import farm
from interleave import add_farm_arguments, checkout, farm_of, first_on_path
from run import PgDatabase, Rssd, machine

OUT = "RSSD_BENCH_THREADS_OUT"
SCENARIOS = ("warm-304", "warm-all-304")

#: The hook (see the module's doc). A thread is named by what it is, not by its number.
HOOK = f'''
import atexit, json, os, sys, threading, time

_times = {{}}


def _name(thread):
    name = thread.name
    if thread is threading.main_thread():
        return "main"
    if name.startswith("rssd-") and name.endswith("-writer"):
        return "writer"
    if name == "QueueFeederThread":
        return "parse pool feeder"
    if name.endswith("(_connection_worker_thread)"):
        return "aiosqlite reader"
    if "(" in name:  # Thread-N (target)
        return name[name.index("(") + 1 : name.rindex(")")].strip("_")
    return name


def _add(name, seconds):
    _times[name] = _times.get(name, 0.0) + seconds


_run = threading.Thread.run


def run(self):
    try:
        _run(self)
    finally:
        _add(_name(self), time.thread_time())


threading.Thread.run = run

try:
    import concurrent.futures.process as _process

    _manager_run = _process._ExecutorManagerThread.run

    def manager_run(self):
        try:
            _manager_run(self)
        finally:
            _add("parse pool manager", time.thread_time())

    _process._ExecutorManagerThread.run = manager_run
except (ImportError, AttributeError):
    pass


def _dump():
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.ident is None:
            continue
        try:
            _add(_name(thread), time.clock_gettime(time.pthread_getcpuclockid(thread.ident)))
        except (OSError, AttributeError):
            pass
    _add("main", time.thread_time())
    _times["process"] = time.process_time()
    path = os.path.join(os.environ["{OUT}"], "%d.json" % os.getpid())
    with open(path, "w") as out:  # the daemon's process: the one that imported its run
        json.dump({{"daemon": "rssd.daemon.run" in sys.modules, "times": _times}}, out)


if os.environ.get("{OUT}"):
    atexit.register(_dump)
'''


def _pass(tool: Rssd, scenario: str, feeds: int, out: Path) -> dict[str, float]:
    """One pass of ``tool``: CPU seconds by thread, the process's, ``other``, and the
    pass's feeds/s (feeds over the process's wall time, as run.py's).

    Every Python process of the pass loads the hook and writes its own file (the
    measuring wrapper too, bench/measure.py): rssd's is the one that imported its run."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    os.environ[OUT] = str(out)
    try:
        usage, _ = tool.run(scenario, feeds)
    finally:
        del os.environ[OUT]
    found = [json.loads(path.read_text()) for path in out.glob("*.json")]
    daemons = [each["times"] for each in found if each["daemon"]]
    if len(daemons) != 1:
        raise SystemExit(f"threads: the {scenario} pass left {len(daemons)} daemon reports")
    times: dict[str, float] = daemons[0]
    seen = sum(value for name, value in times.items() if name != "process")
    times["other"] = max(0.0, times["process"] - seen)
    wall = float(usage["wall_seconds"])
    times["feeds/s"] = feeds / wall if wall else 0.0
    return times


def medians(passes: list[dict[str, float]]) -> dict[str, float]:
    """Each thread's median over the passes (0 for a pass it did not run in)."""
    names = sorted({name for times in passes for name in times})
    return {name: statistics.median(times.get(name, 0.0) for times in passes) for name in names}


def surcharge(
    warm: dict[str, float], quiet: dict[str, float], changed: int
) -> dict[str, tuple[float, float]]:
    """By thread: what a warm-304 pass costs above an all-304 one (s), and per changed feed
    (ms)."""
    names = sorted(set(warm) | set(quiet))
    return {
        name: (
            warm.get(name, 0.0) - quiet.get(name, 0.0),
            (warm.get(name, 0.0) - quiet.get(name, 0.0)) * 1000 / changed if changed else 0.0,
        )
        for name in names
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--changed", type=float, default=0.1)
    add_farm_arguments(parser)
    parser.add_argument("--tree", help="a directory holding an rssd package, first on PYTHONPATH")
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    args = parser.parse_args(argv)
    tree = checkout(args.tree, "threads") if args.tree else None
    load_at_start = round(os.getloadavg()[0], 2)
    workdir = Path(tempfile.mkdtemp(prefix="rssd-threads-"))
    (workdir / "hook").mkdir()
    (workdir / "hook" / "sitecustomize.py").write_text(HOOK)
    (workdir / "rssd").mkdir()
    server, limits = farm_of(args)
    database = None
    if args.postgres:
        database = PgDatabase(args.postgres, f"rssd_threads_{uuid.uuid4().hex[:10]}")
    passes: dict[str, list[dict[str, float]]] = {scenario: [] for scenario in SCENARIOS}
    try:
        urls = [farm.feed_url(i, args.hosts, server.port) for i in range(args.feeds)]
        tool = Rssd(workdir / "rssd", urls, workdir, limits, postgres=database)
        out = workdir / "threads"
        with first_on_path(tree, workdir / "hook"):
            server.call("/_reset")
            tool.run("cold", args.feeds)
            for pair in range(1, args.pairs + 1):
                for scenario in SCENARIOS:
                    server.call("/_reset")
                    for _ in range(pair):  # the same epoch for both passes of a pair
                        server.call(f"/_epoch?fraction={args.changed}")
                    passes[scenario].append(_pass(tool, scenario, args.feeds, out))
    finally:
        server.stop()
        if database is not None:
            database.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    host = {**machine(), "load_at_start": load_at_start}
    changed = round(args.feeds * args.changed)
    speeds = {
        scenario: [times.pop("feeds/s") for times in passes[scenario]] for scenario in SCENARIOS
    }
    warm, quiet = medians(passes["warm-304"]), medians(passes["warm-all-304"])
    if args.json:
        for scenario in SCENARIOS:
            row: dict[str, Any] = {
                "scenario": scenario,
                "feeds": args.feeds,
                "changed_feeds": changed if scenario == "warm-304" else 0,
                "backend": "postgresql" if args.postgres else "sqlite",
                "median_cpu_seconds": medians(passes[scenario]),
                "passes": passes[scenario],
                "feeds_per_second": speeds[scenario],
                "machine": host,
            }
            print(json.dumps(row))
        return 0
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"CPU seconds by thread, {args.feeds} feeds ({changed} changed in warm-304), "
        f"{args.pairs} pairs, medians; rssd on {backend}; machine: {host['cpu_model']}, "
        f"{host['cores']} cores, load average {load_at_start} at the start, "
        f"{host['load_avg'][0]} at the end"
    )
    print(f"  {'thread':<28} {'warm-304':>9} {'all-304':>9} {'+ s':>8} {'+ ms/changed':>13}")
    extra = surcharge(warm, quiet, changed)
    for name in sorted(extra, key=lambda n: (n == "process", -warm.get(n, 0.0))):
        plus, per_feed = extra[name]
        print(
            f"  {name:<28} {warm.get(name, 0.0):9.3f} {quiet.get(name, 0.0):9.3f} "
            f"{plus:+8.3f} {per_feed:+13.3f}"
        )
    warm_speed, quiet_speed = (statistics.median(speeds[scenario]) for scenario in SCENARIOS)
    print(f"  {'feeds/s':<28} {warm_speed:9.1f} {quiet_speed:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
