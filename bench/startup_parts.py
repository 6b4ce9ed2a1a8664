"""Where ``rssd run --once``'s start-up CPU goes, part by part, each part timed alone in a
fresh interpreter (median of ``--runs``).

    .venv/bin/python bench/startup_parts.py --runs 7

bench/startup.py gives the whole: the CPU to the first request, against the bare client's.
At 2,000 feeds that difference is a share of every figure of bench/run.py (a pass spends
well under a second of CPU in all), so it says which parts of it a change would have to
remove, and what each is worth: importing pydantic, config.toml's dataclasses, the
check's models, checking and building a config of ``--feeds`` feeds, building it without
the check (a start whose file was synced as it is: rssd/daemon/run.py), hashing it for
the sync (the digests), the imports of the run as a whole (aiohttp among them, which the
bare client imports too), msgspec (whose Structs are rssd's records), and the dataclasses
left in rssd's modules, config.toml's (Python 3.11 compiles each generated method; that
was 76 classes until the records became Structs). The parts overlap (the run's imports
include config.toml's dataclasses); each is the CPU of its own statement only, after its
setup, in a process of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from run import machine

ROOT = Path(__file__).resolve().parents[1]

#: A part: its name, the setup run first (not timed), and the statement timed.
PARTS: list[tuple[str, str, str]] = [
    ("the interpreter and site", "", "pass"),
    ("import pydantic", "", "import pydantic"),
    ("config.toml's dataclasses", "", "import rssd.models.config"),
    (
        "config.toml's check: its models (pydantic imported)",
        "import pydantic\nimport rssd.models.config",
        "import rssd.models.config_check",
    ),
    (
        "config.toml checked and built",
        "from pathlib import Path\nimport rssd.models.config as config\n"
        "import rssd.models.config_check",
        "config.load_config(Path(PATH))",
    ),
    (
        "config.toml built, trusted (a start after a sync)",
        "from pathlib import Path\nimport rssd.models.config as config",
        "config.load_config(Path(PATH), trust=lambda database: True)",
    ),
    (
        "the sync's digests of it",
        "from pathlib import Path\n"
        "import rssd.models.config as config\n"
        "from rssd.repo.config_versions import config_digests\n"
        "loaded = config.load_config(Path(PATH))",
        "config_digests(loaded)",
    ),
    ("import aiohttp", "", "import aiohttp"),
    ("import msgspec", "", "import msgspec"),
    ("the run's imports", "", "import rssd.cli, rssd.daemon.run, rssd.daemon.once"),
]

#: The child: the setup, then the statement between two readings of the process's CPU
#: clock (the interpreter's own start-up is read from its first reading, before which it
#: imports nothing but ``time``). ``PATH`` is config.toml's, as text.
CHILD = """
import time
PATH = {path!r}
{setup}
_before = time.process_time()
{statement}
_after = time.process_time()
print("%.3f" % (((_after - _before) if {timed_part} else _before) * 1000))
"""

DATACLASS_PART = "rssd's dataclasses, config.toml's (wall ms)"
#: rssd's dataclasses: the time ``dataclasses`` takes to build them, summed over the
#: run's imports (wall clock of that code alone; the process does nothing else meanwhile).
DATACLASSES = """
import dataclasses, time
_made = [0.0, 0]
_process = dataclasses._process_class
def _timed(cls, *args, **kwargs):
    start = time.perf_counter()
    try:
        return _process(cls, *args, **kwargs)
    finally:
        if cls.__module__.startswith("rssd"):
            _made[0] += time.perf_counter() - start
            _made[1] += 1
dataclasses._process_class = _timed
import rssd.cli, rssd.daemon.run, rssd.daemon.once
print("%.3f %d" % (_made[0] * 1000, _made[1]))
"""


def write_config(directory: Path, feeds: int, hosts: int) -> Path:
    """config.toml of ``feeds`` feeds on ``hosts`` loopback addresses (never fetched)."""
    path = directory / "config.toml"
    lines = ['database = "rssd.sqlite3"', ""]
    for n in range(feeds):
        lines += ["[[feeds]]", f'url = "http://127.0.0.{1 + n % hosts}:9/feeds/{n}"', ""]
    path.write_text("\n".join(lines))
    return path


def _child(code: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"startup_parts: a part failed:\n{done.stderr[-2000:]}")
    return done.stdout.split()


def measure(config: Path, runs: int) -> dict[str, list[float]]:
    """Every part's CPU ms over ``runs`` fresh interpreters, parts in turns."""
    figures: dict[str, list[float]] = {name: [] for name, _, _ in PARTS}
    figures[DATACLASS_PART] = []
    for _ in range(runs):
        for name, setup, statement in PARTS:
            code = CHILD.format(
                path=str(config),
                setup=setup,
                statement=statement,
                timed_part=name != PARTS[0][0],
            )
            figures[name].append(float(_child(textwrap.dedent(code))[0]))
        made_ms, _count = _child(DATACLASSES)
        figures[DATACLASS_PART].append(float(made_ms))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--feeds", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="one JSON object per part")
    args = parser.parse_args(argv)
    host = machine()
    with tempfile.TemporaryDirectory(prefix="rssd-startup-parts-") as directory:
        config = write_config(Path(directory), args.feeds, args.hosts)
        figures = measure(config, args.runs)
    if args.json:
        for name, values in figures.items():
            median = statistics.median(values)
            print(json.dumps({"part": name, "ms": values, "median_ms": median, "machine": host}))
        return 0
    print(
        f"start-up parts, CPU ms, median of {args.runs} fresh interpreters each; config.toml of "
        f"{args.feeds} feeds; machine: {host['cpu_model']}, {host['cores']} cores, load "
        f"average {host['load_avg'][0]}"
    )
    for name, values in figures.items():
        print(f"  {statistics.median(values):8.1f}  {name} (min {min(values):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
