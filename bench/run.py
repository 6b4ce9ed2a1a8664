"""The benchmark: rssd and the ``reader`` library side by side on the loopback farm.

    .venv/bin/python bench/run.py --feeds 1000

Starts bench/farm.py in its own process, then for each tool runs four scenarios in order,
each from the database the previous one left:

- cold: empty database, every feed new (N x items posts to parse and store);
- warm-304: the farm's next epoch, 10% of the feeds gain posts, the rest answer 304;
- no-validators: the server sends no ETag/Last-Modified, bodies unchanged;
- timestamp-churn: every body carries a fresh build timestamp (and ETag), items unchanged.

Every tool run is a subprocess under bench/measure.py, which accounts for its whole process
tree (parse workers included). Prints one table, writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pstats
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import farm

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SCENARIOS = ("cold", "warm-304", "no-validators", "timestamp-churn")
#: Issue #5: rssd's feeds/s over reader's (target, stretch).
TARGETS: dict[str, tuple[float, float | None]] = {
    "cold": (2.5, 4.0),
    "warm-304": (5.0, 10.0),
    "no-validators": (5.0, None),
    "timestamp-churn": (5.0, None),
}
RSS_TARGET_MB = 200
LAG_TARGET_MS = 100


@dataclass
class Figures:
    """One tool, one scenario."""

    tool: str
    scenario: str
    feeds: int
    wall_seconds: float
    cpu_seconds: float
    main_cpu_seconds: float  # the tool's own process (all threads), parse workers excluded
    peak_tree_rss_mb: float
    peak_tree_pss_mb: float
    peak_process_rss_mb: float
    processes: int
    posts: int
    db_bytes: int
    loop_lag_max_ms: float | None
    failed: int
    tool_seconds: float | None  # the tool's own timing, without process start-up
    farm: dict[str, float] = field(default_factory=dict)  # 200s, 304s, CPU seconds
    outcomes: dict[str, int] = field(default_factory=dict)
    load_avg: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def feeds_per_second(self) -> float:
        return self.feeds / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def cpu_per_1k(self) -> float:
        return self.cpu_seconds * 1000 / self.feeds

    @property
    def main_cpu_per_1k(self) -> float:
        return self.main_cpu_seconds * 1000 / self.feeds

    @property
    def bytes_per_post(self) -> float:
        return self.db_bytes / self.posts if self.posts else 0.0


class FarmProcess:
    """bench/farm.py in a child process, and its control endpoints."""

    def __init__(self, feeds: int, items: int, hosts: int, gzip: bool) -> None:
        cmd = [sys.executable, str(BENCH / "farm.py"), "--feeds", str(feeds), "--port", "0"]
        cmd += ["--items", str(items), "--hosts", str(hosts)] + (["--gzip"] if gzip else [])
        self.hosts = hosts
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the farm did not start")
        self.info: dict[str, Any] = json.loads(line)
        self.port = int(self.info["port"])
        self._open = urllib.request.build_opener(urllib.request.ProxyHandler({})).open

    def urls(self, feeds: int) -> list[str]:
        return [farm.feed_url(i, self.hosts, self.port) for i in range(feeds)]

    def call(self, path: str, *, post: bool = True) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", method="POST" if post else "GET"
        )
        with self._open(request, timeout=600) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    def stats(self) -> dict[str, Any]:
        return self.call("/_stats", post=False)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def prepare(scenario: str, server: FarmProcess, changed: float) -> None:
    """Put the farm in the state the scenario measures (scenarios run in SCENARIOS order)."""
    if scenario == "cold":
        server.call("/_reset")
    elif scenario == "warm-304":
        server.call(f"/_epoch?fraction={changed}")
    elif scenario == "no-validators":
        server.call("/_mode?validators=0&churn=0")
    elif scenario == "timestamp-churn":
        server.call("/_mode?validators=1&churn=1")


def _tool_env() -> dict[str, str]:
    """The environment minus proxy settings: every request must go to the loopback farm."""
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


def _measure(cmd: list[str], workdir: Path, name: str) -> tuple[dict[str, Any], Path]:
    usage_path, log_path = workdir / f"{name}.usage.json", workdir / f"{name}.stdout"
    measure_cmd = [sys.executable, str(BENCH / "measure.py"), "--out", str(usage_path)]
    subprocess.run(
        [*measure_cmd, "--stdout", str(log_path), "--", *cmd], check=True, env=_tool_env()
    )
    usage: dict[str, Any] = json.loads(usage_path.read_text())
    if usage["returncode"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {usage['returncode']}; see {log_path}")
    return usage, log_path


def _db_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def _count(db: Path, table: str) -> int:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


class Rssd:
    name = "rssd"

    def __init__(self, workdir: Path, urls: list[str], profile_dir: Path | None) -> None:
        self.workdir = workdir
        self.db = workdir / "rssd.sqlite3"
        self.config = workdir / "config.toml"
        self.profile_dir = profile_dir
        feeds = "".join(f"\n[[feeds]]\nurl = {json.dumps(url)}\n" for url in urls)
        # config.toml's defaults for everything but the database and the feed list.
        self.config.write_text(f'database = "{self.db.name}"\n{feeds}')

    def command(self, scenario: str) -> list[str]:
        args = ["run", "--once", "-c", str(self.config)]
        if self.profile_dir is not None:
            prof = self.profile_dir / f"rssd-{scenario}.prof"
            return [sys.executable, str(BENCH / "profile_rssd.py"), str(prof), "--", *args]
        script = Path(sys.executable).with_name("rssd")
        return [str(script), *args] if script.exists() else [sys.executable, "-m", "rssd", *args]

    def run(self, scenario: str, feeds: int) -> tuple[dict[str, Any], dict[str, Any]]:
        usage, log_path = _measure(self.command(scenario), self.workdir, scenario)
        summary: dict[str, Any] = {}
        outcomes: Counter[str] = Counter()
        with log_path.open() as log:
            for line in log:
                event = json.loads(line)
                if event.get("message") == "fetch.completed":
                    outcomes[event.get("outcome", "?")] += 1
                elif event.get("message") == "fetch.failed":
                    outcomes["failed:" + str(event.get("error_code"))] += 1
                elif event.get("message") == "run.summary":
                    summary = event
        if not summary:
            raise RuntimeError(f"rssd logged no run.summary; see {log_path}")
        return usage, {
            "posts": _count(self.db, "posts"),
            "db_bytes": _db_size(self.db),
            "loop_lag_max_ms": summary.get("loop_lag_max_ms"),
            "failed": int(summary.get("failed", 0)),
            "tool_seconds": summary["elapsed_ms"] / 1000,
            "outcomes": dict(outcomes),
        }


class Reader:
    name = "reader"

    def __init__(self, workdir: Path, urls: list[str], workers: int) -> None:
        self.workdir = workdir
        self.db = workdir / "reader.sqlite3"
        self.workers = workers
        urls_file = workdir / "urls.txt"
        urls_file.write_text("\n".join(urls))
        driver = [sys.executable, str(BENCH / "reader_driver.py")]
        subprocess.run([*driver, "setup", str(self.db), str(urls_file)], check=True)
        self.update = [*driver, "update", str(self.db), "--workers", str(workers)]

    def run(self, scenario: str, feeds: int) -> tuple[dict[str, Any], dict[str, Any]]:
        usage, log_path = _measure(self.update, self.workdir, scenario)
        result = json.loads(log_path.read_text().strip().splitlines()[-1])
        return usage, {
            "posts": _count(self.db, "entries"),
            "db_bytes": _db_size(self.db),
            "loop_lag_max_ms": None,
            "failed": int(result["broken"]),
            "tool_seconds": result["elapsed_seconds"],
            "outcomes": {},
        }


def run_tool(
    tool: Rssd | Reader, server: FarmProcess, feeds: int, changed: float, scenarios: list[str]
) -> list[Figures]:
    out = []
    for scenario in scenarios:
        prepare(scenario, server, changed)
        before = server.stats()
        load = os.getloadavg()
        print(f"  {tool.name:6} {scenario:16} ...", end="", flush=True)
        usage, extra = tool.run(scenario, feeds)
        after = server.stats()
        mb = 1024 * 1024
        figures = Figures(
            tool=tool.name,
            scenario=scenario,
            feeds=feeds,
            wall_seconds=usage["wall_seconds"],
            cpu_seconds=usage["user_seconds"] + usage["sys_seconds"],
            main_cpu_seconds=usage["main_cpu_seconds"],
            peak_tree_rss_mb=round(usage["peak_tree_rss_bytes"] / mb, 1),
            peak_tree_pss_mb=round(usage["peak_tree_pss_bytes"] / mb, 1),
            peak_process_rss_mb=round(usage["peak_process_rss_bytes"] / mb, 1),
            processes=usage["processes"],
            farm={
                "200": after["200"] - before["200"],
                "304": after["304"] - before["304"],
                "cpu_seconds": round(after["cpu_seconds"] - before["cpu_seconds"], 2),
            },
            load_avg=(round(load[0], 2), round(load[1], 2), round(load[2], 2)),
            **extra,
        )
        print(
            f" {figures.wall_seconds:7.1f} s  {figures.feeds_per_second:7.1f} feeds/s"
            f"  (load {figures.load_avg[0]:.2f})",
            flush=True,
        )
        out.append(figures)
    return out


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


#: Table columns: header, width, the figure, digits, whether a ratio row makes sense.
COLUMNS: list[tuple[str, int, Callable[[Figures], float | None], int, bool]] = [
    ("wall s", 8, lambda f: f.wall_seconds, 2, True),
    ("feeds/s", 8, lambda f: f.feeds_per_second, 1, True),
    ("CPU s/1k", 8, lambda f: f.cpu_per_1k, 2, True),
    ("main/1k", 7, lambda f: f.main_cpu_per_1k, 2, True),
    ("RSS MB", 6, lambda f: f.peak_tree_rss_mb, 0, True),
    ("PSS MB", 6, lambda f: f.peak_tree_pss_mb, 0, True),
    ("B/post", 6, lambda f: f.bytes_per_post, 0, True),
    ("lag ms", 6, lambda f: f.loop_lag_max_ms, 0, False),
    ("200", 5, lambda f: f.farm["200"], 0, False),
    ("304", 5, lambda f: f.farm["304"], 0, False),
    ("failed", 6, lambda f: f.failed, 0, False),
    ("farm CPU", 8, lambda f: f.farm["cpu_seconds"], 2, False),
]


def table(results: list[Figures]) -> str:
    """The figures, rssd above reader, with a ratio row rssd/reader per scenario."""
    header = f"{'scenario':16} {'tool':6} " + " ".join(f"{h:>{w}}" for h, w, *_ in COLUMNS)
    lines = [header, "-" * len(header)]
    by_key = {(f.tool, f.scenario): f for f in results}
    for scenario in SCENARIOS:
        rows = [by_key[(t, scenario)] for t in ("rssd", "reader") if (t, scenario) in by_key]
        for f in rows:
            cells = " ".join(f"{_fmt(get(f), d):>{w}}" for _, w, get, d, _ in COLUMNS)
            lines.append(f"{scenario:16} {f.tool:6} {cells}")
        if len(rows) == 2:
            a, b = rows
            cells = " ".join(
                f"{_fmt(_ratio(get(a), get(b)) if ratio else None, 2):>{w}}"
                for _, w, get, _, ratio in COLUMNS
                if ratio
            )
            speed = _ratio(a.feeds_per_second, b.feeds_per_second) or 0.0
            target, stretch = TARGETS[scenario]
            verdict = "met" if speed >= target else "NOT met"
            if stretch and speed >= stretch:
                verdict += ", stretch met"
            lines.append(f"{'':16} {'ratio':6} {cells}  target >= {target:g}x feeds/s: {verdict}")
    rssd = [f for f in results if f.tool == "rssd"]
    if rssd:
        worst_rss = max(f.peak_tree_rss_mb for f in rssd)
        cold_lag = next((f.loop_lag_max_ms for f in rssd if f.scenario == "cold"), None)
        lines.append(
            f"rssd peak RSS (tree) {worst_rss:.0f} MB (target <= {RSS_TARGET_MB} MB at 10,000 "
            f"feeds); loop lag during cold {_fmt(cold_lag, 0)} ms (target <= {LAG_TARGET_MS})"
        )
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def print_profile(path: Path, limit: int = 30) -> None:
    """The main thread's CPU by function, and every thread's CPU total."""
    threads = json.loads(Path(f"{path}.threads.json").read_text())
    print(f"\n== {path.name}: CPU seconds by thread of the main process ==")
    for name, cpu in sorted(threads.items(), key=lambda kv: -kv[1]):
        print(f"  {cpu:8.2f}  {name}")
    stats = pstats.Stats(str(path))
    print(f"== {path.name}: main thread, top {limit} by own CPU time ==")
    stats.sort_stats("tottime").print_stats(limit)
    print(f"== {path.name}: main thread, top {limit} rssd functions by cumulative CPU ==")
    stats.sort_stats("cumulative").print_stats(r"rssd/", limit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--items", type=int, default=50, help="posts per feed")
    parser.add_argument("--hosts", type=int, default=50, help="loopback addresses of the farm")
    parser.add_argument("--changed", type=float, default=0.1, help="warm-304: share changed")
    parser.add_argument("--tools", default="rssd,reader", help="comma-separated")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated subset, run in this order (each on the state the last left)",
    )
    parser.add_argument("--reader-workers", type=int, default=20)
    parser.add_argument("--gzip", action="store_true", help="the farm gzips its bodies")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run rssd under cProfile, main-thread CPU clock (slower; figures marked)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases and logs")
    parser.add_argument("--json", type=Path, help="results file (default: bench/results/...)")
    args = parser.parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if unknown := set(tools) - {"rssd", "reader"}:
        parser.error(f"unknown tools: {sorted(unknown)}")
    wanted = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    if unknown := wanted - set(SCENARIOS):
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    scenarios = [s for s in SCENARIOS if s in wanted]
    if scenarios[:1] != ["cold"]:
        parser.error("the scenarios start from an empty database: include cold")

    stamp = time.strftime("%Y%m%dT%H%M%S")
    run_dir = RESULTS / f"{stamp}-n{args.feeds}"
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(f"farm: {args.feeds} feeds x {args.items} items on {args.hosts} loopback hosts ...")
    server = FarmProcess(args.feeds, args.items, args.hosts, args.gzip)
    results: list[Figures] = []
    try:
        info = server.info
        print(
            f"farm ready: port {server.port}, {info['bytes_total'] / 1e6:.0f} MB of feeds "
            f"rendered in {info['render_seconds']} s; e.g. {info['example']}"
        )
        urls = server.urls(args.feeds)
        for name in tools:
            workdir = run_dir / name
            workdir.mkdir()
            tool: Rssd | Reader
            if name == "rssd":
                tool = Rssd(workdir, urls, run_dir if args.profile else None)
            else:
                tool = Reader(workdir, urls, args.reader_workers)
            results.extend(run_tool(tool, server, args.feeds, args.changed, scenarios))
    finally:
        server.stop()
    elapsed = time.monotonic() - started

    print()
    print(
        f"{args.feeds:,} feeds x {args.items} items, {args.hosts} loopback hosts; "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs (shared with the farm); bench took {elapsed:.0f} s"
        + ("; rssd under cProfile" if args.profile else "")
    )
    print(table(results))
    out = args.json or RESULTS / f"{stamp}-n{args.feeds}.json"
    out.write_text(
        json.dumps(
            {
                "feeds": args.feeds,
                "items": args.items,
                "hosts": args.hosts,
                "changed": args.changed,
                "profiled": args.profile,
                "elapsed_seconds": round(elapsed, 1),
                "results": [
                    {
                        **asdict(f),
                        "feeds_per_second": round(f.feeds_per_second, 1),
                        "cpu_seconds_per_1k_feeds": round(f.cpu_per_1k, 2),
                        "main_cpu_seconds_per_1k_feeds": round(f.main_cpu_per_1k, 2),
                        "db_bytes_per_post": round(f.bytes_per_post),
                    }
                    for f in results
                ],
            },
            indent=2,
        )
    )
    print(f"results: {out}")
    if args.profile:
        for scenario in SCENARIOS:
            prof = run_dir / f"rssd-{scenario}.prof"
            if prof.exists():
                print_profile(prof)
    if not args.keep:
        for name in tools:
            shutil.rmtree(run_dir / name, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
