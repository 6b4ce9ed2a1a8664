"""Run the ``rssd`` CLI in this process under cProfile, for bench/run.py ``--profile``.

    python bench/profile_rssd.py OUT.prof -- run --once -c config.toml

The profiler's clock is the main thread's CPU time (``time.thread_time``), not the wall
clock: waits on the parse workers, on SQLite's thread and on a machine busy with other work
do not show up as time spent in whatever function was waiting. What the other threads of
the process cost (aiosqlite's, the process pool's manager and feeder) is sampled from
/proc every 0.2 s and written next to the profile as OUT.threads.json.
"""

from __future__ import annotations

import cProfile
import json
import os
import sys
import threading
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _thread_cpu(tid: int) -> float | None:
    try:
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _sample(seen: dict[str, float], stop: threading.Event) -> None:
    """Keep the latest CPU seconds of every thread, keyed by its Python name."""
    me = threading.get_native_id()
    while not stop.wait(0.2):
        for thread in threading.enumerate():
            tid = thread.native_id
            if tid is None or tid == me:
                continue
            cpu = _thread_cpu(tid)
            if cpu is not None:
                seen[f"{thread.name} ({tid})"] = cpu


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    args = argv[2:] if argv[1:2] == ["--"] else argv[1:]
    seen: dict[str, float] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(seen, stop), daemon=True)
    sampler.start()
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    try:
        from rssd.cli import main as rssd_main  # noqa: PLC0415 (start-up is profiled too)

        code = rssd_main(args)
    finally:
        profiler.disable()
        stop.set()
        sampler.join()
        profiler.dump_stats(out)
        Path(f"{out}.threads.json").write_text(json.dumps(seen, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
