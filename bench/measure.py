"""Run one command and account for its whole process tree (Linux only).

    python bench/measure.py --out usage.json [--stdout log] -- CMD ARGS...

This process makes itself a child subreaper, so every descendant of CMD (a forkserver, the
parse workers it forks, anything orphaned) is reaped here and its CPU time lands in
``getrusage(RUSAGE_CHILDREN)``: user + sys of the whole tree, however deep. Memory is
sampled from /proc every 0.1 s: the peak of the summed RSS (and PSS, which counts shared
pages once) of all processes in the tree, and the peak RSS of the largest one. The command's
own process is reaped with wait4(), which gives its exact end time and its own CPU time
(all its threads; not the processes below it).
This process's own sampling is not charged to CMD.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
SAMPLE_SECONDS = 0.1
PAGE = os.sysconf("SC_PAGE_SIZE")


def _parents() -> dict[int, int]:
    """pid -> ppid for every process (/proc/PID/stat; the comm field may hold spaces)."""
    out: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            out[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return out


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, plus orphans reparented to this subreaper."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    me = os.getpid()
    seen: list[int] = []
    todo = [pid, *(c for c in children.get(me, []) if c != pid)]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.append(current)
        todo.extend(children.get(current, []))
    return seen


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def measure(cmd: list[str], stdout_path: Path | None) -> dict[str, object]:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_rss = peak_pss = peak_one = 0
    processes = 0
    ended: list[tuple[float, int, resource.struct_rusage]] = []
    with Path(stdout_path or os.devnull).open("wb") as out:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out)

        def wait() -> None:  # the exact end time, and the main process's own usage
            _, status, usage = os.wait4(proc.pid, 0)
            ended.append((time.monotonic(), os.waitstatus_to_exitcode(status), usage))

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        while waiter.is_alive():
            pids = descendants(proc.pid)
            processes = max(processes, len(pids))
            sizes = [_rss(p) for p in pids]
            peak_rss = max(peak_rss, sum(sizes))
            peak_one = max(peak_one, *sizes, 0)
            peak_pss = max(peak_pss, sum(_pss(p) for p in pids))
            waiter.join(SAMPLE_SECONDS)
    end, returncode, main_usage = ended[0]
    proc.returncode = returncode
    # Reap whatever the command left behind (it has been reparented here).
    deadline = time.monotonic() + 30
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if time.monotonic() > deadline:
                for left in descendants(os.getpid())[1:]:
                    with contextlib.suppress(OSError):
                        os.kill(left, 9)
            time.sleep(0.02)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "returncode": returncode,
        "wall_seconds": round(end - started, 3),
        "user_seconds": round(after.ru_utime - before.ru_utime, 3),
        "sys_seconds": round(after.ru_stime - before.ru_stime, 3),
        # The command's own process (all its threads), without the processes below it.
        "main_cpu_seconds": round(main_usage.ru_utime + main_usage.ru_stime, 3),
        "main_peak_rss_bytes": main_usage.ru_maxrss * 1024,
        "peak_tree_rss_bytes": peak_rss,
        "peak_tree_pss_bytes": peak_pss,
        "peak_process_rss_bytes": max(peak_one, after.ru_maxrss * 1024),
        "processes": processes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure a command's whole process tree.")
    parser.add_argument("--out", type=Path, required=True, help="write the figures here (JSON)")
    parser.add_argument("--stdout", type=Path, help="the command's stdout goes here")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("no command given")
    result = measure(cmd, args.stdout)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
