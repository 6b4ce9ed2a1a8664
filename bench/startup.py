"""Start-up alone: the CPU a pass spends before its first request, per rssd checkout and
for the bare client.

    .venv/bin/python bench/startup.py --runs 10 /tmp/old-checkout .
    .venv/bin/python bench/startup.py --runs 10 --postgres \\
        postgresql://postgres@127.0.0.1:5432/postgres .

At 2,000 feeds, ``rssd run --once`` spends about as much CPU before its first request as
its next few hundred checks cost, so start-up is a share of every figure of bench/run.py
and bench/interleave.py; but one change to it is worth a few percent of a pass, less than
a pass's noise (bench/README.md, "Seventh round"). Measured alone, it moves by 1-2%.

Each TREE is a directory holding an ``rssd`` package, as bench/interleave.py's (``.``, or a
``git worktree add /tmp/old-checkout COMMIT``), byte-compiled first. Each gets a database of
its own (``--postgres``: on that server, dropped at the end), warmed by one cold pass on a
farm without latency, and the bare client its validators the same way. Then, ``--runs``
times, the tools in turns (every other round in the opposite order), each on a fresh copy
of its warm state (on PostgreSQL, a database of the same name made from the warm one,
kept aside, as its template: config.toml is the same file, which a sync trusts): the
process runs with a hook on PYTHONPATH (a ``sitecustomize``) that, at the first call of
aiohttp's ``ClientSession._request``, writes the process's CPU time so far and ends it. For
rssd that covers the interpreter, the imports, config.toml, the database opened and
recovered, the sync, the source list, the validators and the first claims.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import farm
from interleave import checkout, first_on_path
from run import Bare, FarmProcess, PgDatabase, Rssd, machine

MARK = "RSSD_BENCH_FIRST_REQUEST_CPU_MS"

#: The hook: a sitecustomize that patches aiohttp's ClientSession._request once aiohttp's
#: client module has run, so that the first request ends the process with its CPU time.
HOOK = f'''
import os, sys, time, importlib.abc, importlib.util


def _first_request(*args, **kwargs):
    sys.stderr.write("{MARK} %.3f\\n" % (time.process_time() * 1000))
    sys.stderr.flush()
    os._exit(0)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "aiohttp.client":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            module.ClientSession._request = _first_request

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _Finder())
'''


def _first_request_cpu(command: list[str], env: dict[str, str], cwd: Path) -> float:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    for line in done.stderr.splitlines():
        if line.startswith(MARK):
            return float(line.split()[1])
    raise SystemExit(f"startup: no request was made by {command}:\n{done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("trees", nargs="+", help="directories holding an rssd package")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--feeds", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="one JSON object per tool")
    parser.add_argument("--postgres", metavar="SERVER_URL", help="rssd on PostgreSQL there")
    args = parser.parse_args(argv)
    trees = [checkout(path, "startup") for path in args.trees]
    load_at_start = round(os.getloadavg()[0], 2)
    workdir = Path(tempfile.mkdtemp(prefix="rssd-startup-"))
    (workdir / "hook").mkdir()
    (workdir / "hook" / "sitecustomize.py").write_text(HOOK)
    limits = {"max_concurrency": 500, "max_per_host": 2}
    server = FarmProcess(args.feeds, 50, args.hosts, False, (0.0, 1.0, 1))
    #: Each tool's warm database on PostgreSQL, by its state directory.
    warm_databases: dict[Path, PgDatabase] = {}
    try:
        urls = [farm.feed_url(i, args.hosts, server.port) for i in range(args.feeds)]
        tools: list[tuple[str, Path, list[str], str]] = []  # name, state dir, command, path
        for n, tree in enumerate(trees):
            warm = workdir / f"tree{n}"
            warm.mkdir()
            postgres = None
            if args.postgres:
                postgres = PgDatabase(args.postgres, f"rssd_startup_{uuid.uuid4().hex[:10]}")
                warm_databases[warm] = postgres
            rssd = Rssd(warm, urls, workdir, limits, postgres=postgres)
            with first_on_path(tree):
                rssd.run("cold", args.feeds)
            if postgres is not None:
                postgres.set_aside()
            tools.append((f"{n}: {tree}", warm, rssd.command("warm"), str(tree)))
        (workdir / "bare").mkdir()
        bare = Bare(workdir / "bare", urls, dict(limits))
        bare.run("cold", args.feeds)
        tools.append(("bare", workdir / "bare", bare.command, ""))
        figures: dict[str, list[float]] = {name: [] for name, _, _, _ in tools}
        for round_ in range(args.runs):
            for name, warm, command, path in tools if round_ % 2 == 0 else tools[::-1]:
                run_dir = workdir / "run"
                shutil.rmtree(run_dir, ignore_errors=True)
                shutil.copytree(warm, run_dir)  # the same warm state every time
                moved = [part.replace(str(warm), str(run_dir)) for part in command]
                if warm in warm_databases:  # the same warm database every time too
                    warm_databases[warm].restore()
                with first_on_path(path, workdir / "hook"):
                    figures[name].append(_first_request_cpu(moved, dict(os.environ), run_dir))
    finally:
        server.stop()
        for database in warm_databases.values():
            database.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    host = {**machine(), "load_at_start": load_at_start}
    bare_median = statistics.median(figures["bare"])
    if args.json:
        for name, values in figures.items():
            median = statistics.median(values)
            print(
                json.dumps(
                    {
                        "tool": name,
                        "cpu_ms_to_first_request": values,
                        "median_ms": median,
                        "machine": host,
                    }
                )
            )
        return 0
    print(
        f"CPU to the first request, {args.feeds} feeds, {args.runs} runs each; machine: "
        f"{host['cpu_model']}, {host['cores']} cores, load average {load_at_start} at the "
        f"start, {host['load_avg'][0]} at the end; rssd on "
        f"{'PostgreSQL' if args.postgres else 'SQLite'}"
    )
    for name, values in figures.items():
        median = statistics.median(values)
        print(
            f"  {name:<40} median {median:7.1f} ms (min {min(values):.1f}, "
            f"max {max(values):.1f}); {median - bare_median:+.1f} ms against the bare client"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
