"""The benchmark: rssd beside the ``reader`` library and a bare HTTP client, on the farm.

    .venv/bin/python bench/run.py --feeds 1000                      # rssd vs reader
    .venv/bin/python bench/run.py --feeds 5000 --hosts 250 --latency-ms 100 \
        --max-concurrency 500 --tools bare,rssd --scenarios cold,warm-304,warm-all-304

Starts bench/farm.py in its own process, then runs the scenarios in order, each tool from
the state (database, validators) its previous scenario left:

- cold: empty database, every feed new (N x items posts to parse and store);
- warm-304: the farm's next epoch, 10% of the feeds gain posts, the rest answer 304;
- warm-all-304: nothing changed since warm-304: every feed answers 304;
- no-validators: the server sends no ETag/Last-Modified, bodies unchanged;
- timestamp-churn: every body carries a fresh build timestamp (and ETag), items unchanged.

The tools take turns within each scenario (the farm is reset and brought to the scenario's
state before each tool's turn), so they meet the same farm, the same latency draws and about
the same load from the rest of the machine. Every tool run is a subprocess under
bench/measure.py, which accounts for its whole process tree (parse workers included).
Prints one table, writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import itertools
import json
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
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
from urllib.parse import urlsplit, urlunsplit

import farm

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SCENARIOS = ("cold", "warm-304", "warm-all-304", "no-validators", "timestamp-churn")
DEFAULT_SCENARIOS = ("cold", "warm-304", "no-validators", "timestamp-churn")
TOOLS = ("rssd", "rssd-pg", "reader", "bare")
#: rssd run on SQLite (``rssd``, or PostgreSQL with --postgres) and on PostgreSQL
#: (``rssd-pg``), side by side in one run.
RSSD_TOOLS = ("rssd", "rssd-pg")
#: The local test server, where ``rssd-pg`` runs unless --postgres names another.
DEFAULT_PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
#: rssd's feeds/s over a peer's, (target, stretch): vs reader on the zero-latency farm (issues
#: #5, #13), vs the bare client on the latency farm (#13).
TARGETS: dict[tuple[str, str], tuple[float, float | None]] = {
    ("reader", "cold"): (5.0, 8.0),
    ("reader", "warm-304"): (5.0, 10.0),
    ("reader", "warm-all-304"): (5.0, None),
    ("reader", "no-validators"): (5.0, None),
    ("reader", "timestamp-churn"): (5.0, None),
    ("bare", "warm-304"): (0.6, 0.8),
    ("bare", "warm-all-304"): (0.7, 0.9),
}
#: rssd's main-process CPU per check over the bare client's, (target, stretch), on the
#: latency farm (issue #25): what rssd costs beyond the HTTP exchange itself.
CPU_TARGETS: dict[str, tuple[float, float | None]] = {
    "warm-all-304": (2.0, 1.5),
    "warm-304": (2.5, None),
}
#: PostgreSQL's main-process CPU per check over SQLite's (rssd-pg / rssd).
PG_CPU_TARGET = 1.2
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
    #: Requests the farm was serving at once: the peak, and the mean over the tool's run
    #: (None without latency: the farm then answers each request in one step of its loop).
    in_flight_peak: int | None = None
    in_flight_mean: float | None = None

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

    def __init__(
        self, feeds: int, items: int, hosts: int, gzip: bool, latency: tuple[float, float, int]
    ) -> None:
        median_ms, sigma, seed = latency
        cmd = [sys.executable, str(BENCH / "farm.py"), "--feeds", str(feeds), "--port", "0"]
        cmd += ["--items", str(items), "--hosts", str(hosts)] + (["--gzip"] if gzip else [])
        cmd += ["--latency-ms", str(median_ms), "--latency-sigma", str(sigma)]
        cmd += ["--seed", str(seed)]
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
    """One scenario's step from the state the previous one left (SCENARIOS order)."""
    if scenario == "cold":
        server.call("/_reset")
    elif scenario == "warm-304":
        server.call(f"/_epoch?fraction={changed}")
    elif scenario == "warm-all-304":
        pass  # nothing changes: every conditional GET is answered 304
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
    # In the tool's own directory: Python 3.11's forkserver imports its preloads with the
    # working directory first on sys.path, not the daemon's path, so run from a checkout
    # the parse workers of interleave.py's other trees loaded this checkout's rssd.
    subprocess.run(
        [*measure_cmd, "--stdout", str(log_path), "--", *cmd],
        check=True,
        env=_tool_env(),
        cwd=workdir,
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


class PgDatabase:
    """A fresh PostgreSQL database on ``server`` (a URL naming any database there) for
    rssd's run: created empty, measured with the server's own functions, dropped after."""

    def __init__(self, server: str, name: str) -> None:
        import psycopg  # noqa: PLC0415  (only with --postgres)

        self._psycopg = psycopg
        self.server, self.name = server, name
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(server)
        self.url = urlunsplit(parts._replace(path=f"/{name}"))

    def set_aside(self) -> None:
        """Keep this database as it is now, under another name, for ``restore``."""
        with self._psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{self.name}" RENAME TO "{self.name}_aside"')

    def restore(self) -> None:
        """This database as ``set_aside`` kept it (a copy: the kept one stays as it is),
        under its own name, so the URL in config.toml, and so the file, stay the same."""
        with self._psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.name}" TEMPLATE "{self.name}_aside"')

    def count(self, table: str) -> int:
        with self._psycopg.connect(self.url) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    def size(self) -> int:
        with self._psycopg.connect(self.url) as conn:
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0

    def drop(self) -> None:
        with self._psycopg.connect(self.server, autocommit=True) as conn:
            for name in (self.name, f"{self.name}_aside"):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Rssd:
    def __init__(
        self,
        workdir: Path,
        urls: list[str],
        profile_dir: Path,
        limits: dict[str, int] | None = None,
        profiler: str | None = None,
        *,
        postgres: PgDatabase | None = None,
        name: str = "rssd",
        py_spy_rate: int = 100,
        py_spy_gil: bool = False,
    ) -> None:
        self.name = name
        self.py_spy_rate = py_spy_rate
        self.py_spy_gil = py_spy_gil
        self.workdir = workdir
        self.db = workdir / "rssd.sqlite3"
        self.postgres = postgres
        self.config = workdir / "config.toml"
        self.profile_dir = profile_dir
        self.profiler = profiler
        feeds = "".join(f"\n[[feeds]]\nurl = {json.dumps(url)}\n" for url in urls)
        # config.toml's defaults for everything but the database, the feed list and the
        # limits the command line sets (max_concurrency, max_per_host).
        settings = "".join(f"{key} = {value}\n" for key, value in (limits or {}).items())
        # No gap between requests to one host: the bare client it is compared with has
        # none, and the farm serves dozens of feeds per address.
        settings += "host_min_gap_seconds = 0\n"
        database = postgres.url if postgres is not None else self.db.name
        self.config.write_text(f"database = {json.dumps(database)}\n{settings}{feeds}")

    def command(self, scenario: str) -> list[str]:
        args = ["run", "--once", "-c", str(self.config)]
        if self.profiler == "cprofile":
            prof = self.profile_dir / f"{self.name}-{scenario}.prof"
            return [sys.executable, str(BENCH / "profile_rssd.py"), str(prof), "--", *args]
        # The interpreter, not the rssd script: py-spy must see a Python process.
        command = [sys.executable, "-m", "rssd", *args]
        if self.profiler == "py-spy":
            out = self.profile_dir / f"{self.name}-{scenario}.pyspy.txt"
            spy = str(Path(sys.executable).with_name("py-spy"))
            return [
                spy,
                "record",
                "--threads",
                "--nonblocking",
                *(["--gil"] if self.py_spy_gil else []),
                "--rate",
                str(self.py_spy_rate),
                "--format",
                "raw",
                "-o",
                str(out),
                "--",
                *command,
            ]
        script = Path(sys.executable).with_name("rssd")
        return [str(script), *args] if script.exists() else command

    def run(self, scenario: str, feeds: int) -> tuple[dict[str, Any], dict[str, Any]]:
        usage, log_path = _measure(self.command(scenario), self.workdir, scenario)
        summary: dict[str, Any] = {}
        outcomes: Counter[str] = Counter()
        with log_path.open() as log:
            for line in log:
                if not line.startswith("{"):  # py-spy's own lines, with --py-spy
                    continue
                event = json.loads(line)
                if event.get("message") == "fetch.completed":
                    outcomes[event.get("outcome", "?")] += 1
                elif event.get("message") == "fetch.failed":
                    outcomes["failed:" + str(event.get("error_code"))] += 1
                elif event.get("message") == "run.summary":
                    summary = event
        if not summary:
            raise RuntimeError(f"rssd logged no run.summary; see {log_path}")
        pg = self.postgres
        return usage, {
            "posts": pg.count("posts") if pg else _count(self.db, "posts"),
            "db_bytes": pg.size() if pg else _db_size(self.db),
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


class Bare:
    """bench/bare_client.py: the conditional GETs alone, the HTTP limit for these limits."""

    name = "bare"

    def __init__(self, workdir: Path, urls: list[str], limits: dict[str, float]) -> None:
        self.workdir = workdir
        self.state = workdir / "validators.json"
        urls_file = workdir / "urls.txt"
        urls_file.write_text("\n".join(urls))
        self.command = [sys.executable, str(BENCH / "bare_client.py"), str(self.state)]
        self.command += [str(urls_file)]
        self.command += ["--max-concurrency", str(limits.get("max_concurrency", 20))]
        self.command += ["--max-per-host", str(limits.get("max_per_host", 2))]

    def run(self, scenario: str, feeds: int) -> tuple[dict[str, Any], dict[str, Any]]:
        usage, log_path = _measure(self.command, self.workdir, scenario)
        result = json.loads(log_path.read_text().strip().splitlines()[-1])
        return usage, {
            "posts": 0,
            "db_bytes": 0,
            "loop_lag_max_ms": result["loop_lag_max_ms"],
            "failed": int(result["failed"]),
            "tool_seconds": result["elapsed_seconds"],
            "outcomes": result["statuses"],
        }


Tool = Rssd | Reader | Bare


#: The scenarios ``--repeat`` runs several times: a pass of them leaves every tool's
#: database as the next pass needs it (warm-304 moves the farm on by one epoch a pass).
REPEATABLE = ("warm-304", "warm-all-304")


def run_all(
    tools: list[Tool],
    server: FarmProcess,
    feeds: int,
    changed: float,
    scenarios: list[str],
    *,
    latency: bool,
    repeat: int = 1,
) -> list[Figures]:
    """Scenario by scenario, each tool in turn on the farm brought to that scenario's state;
    the REPEATABLE scenarios ``repeat`` rounds of every tool in turn."""
    out = []
    epochs = 0  # warm-304 passes every tool's database has seen, this one included
    for index, scenario in enumerate(scenarios):
        for _ in range(repeat if scenario in REPEATABLE else 1):
            epochs += scenario == "warm-304"
            for tool in tools:
                for step in scenarios[: index + 1]:  # scenarios[0] is cold: a reset
                    for _ in range(epochs if step == "warm-304" else 1):
                        prepare(step, server, changed)
                out.append(run_one(tool, scenario, server, feeds, latency))
    return out


def median_passes(results: list[Figures]) -> list[Figures]:
    """Each tool's median pass of each scenario by main-process CPU per check (the lower
    of the middle two of an even count): one real pass, all its columns together."""
    passes: dict[tuple[str, str], list[Figures]] = {}
    for figures in results:
        passes.setdefault((figures.tool, figures.scenario), []).append(figures)
    chosen = []
    for group in passes.values():
        ranked = sorted(group, key=lambda f: f.main_cpu_per_1k)
        chosen.append(ranked[(len(ranked) - 1) // 2])
    return chosen


def rounds_summary(results: list[Figures]) -> str:
    """The repeated scenarios round by round: each tool's CPU per check, and each rssd's
    ratio to the bare client's within the round (the machine's drift cancels there)."""
    lines = []
    for scenario in REPEATABLE:
        passes = [f for f in results if f.scenario == scenario]
        tools = list(dict.fromkeys(f.tool for f in passes))
        by_tool = {tool: [f for f in passes if f.tool == tool] for tool in tools}
        if not passes or len(by_tool[tools[0]]) < 2:
            continue
        lines.append(f"{scenario}, main ms/chk round by round:")
        for tool in tools:
            cells = " ".join(f"{f.main_cpu_per_1k:.3f}" for f in by_tool[tool])
            lines.append(f"  {tool:8} {cells}")
        for tool in tools:
            if tool in RSSD_TOOLS and "bare" in by_tool:
                ratios = [
                    mine.main_cpu_per_1k / bare.main_cpu_per_1k
                    for mine, bare in zip(by_tool[tool], by_tool["bare"], strict=True)
                ]
                lines.append(
                    f"  {tool}/bare round by round: median {statistics.median(ratios):.2f}x "
                    f"({min(ratios):.2f}-{max(ratios):.2f})"
                )
    return "\n".join(lines)


def run_one(tool: Tool, scenario: str, server: FarmProcess, feeds: int, latency: bool) -> Figures:
    before = server.stats()
    load = os.getloadavg()
    print(f"  {tool.name:6} {scenario:16} ...", end="", flush=True)
    usage, extra = tool.run(scenario, feeds)
    after = server.stats()
    mb = 1024 * 1024
    wall = usage["wall_seconds"]
    in_flight_seconds = after["in_flight_seconds"] - before["in_flight_seconds"]
    figures = Figures(
        tool=tool.name,
        scenario=scenario,
        feeds=feeds,
        wall_seconds=wall,
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
        in_flight_peak=after["in_flight_peak"] if latency else None,
        in_flight_mean=round(in_flight_seconds / wall, 1) if latency and wall else None,
        **extra,
    )
    print(
        f" {figures.wall_seconds:7.1f} s  {figures.feeds_per_second:7.1f} feeds/s"
        f"  in flight peak {_fmt(figures.in_flight_peak, 0)}  (load {figures.load_avg[0]:.2f})",
        flush=True,
    )
    return figures


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


#: Table columns: header, width, the figure, digits, whether a ratio row makes sense.
#: ``main/1k`` (CPU seconds of the tool's own process per 1,000 feeds) is also its CPU ms
#: per check; ``in fl``/``mean fl``: requests the farm was serving at once, peak and mean.
COLUMNS: list[tuple[str, int, Callable[[Figures], float | None], int, bool]] = [
    ("wall s", 8, lambda f: f.wall_seconds, 2, True),
    ("feeds/s", 8, lambda f: f.feeds_per_second, 1, True),
    ("CPU s/1k", 8, lambda f: f.cpu_per_1k, 2, True),
    ("main ms/chk", 11, lambda f: f.main_cpu_per_1k, 2, True),
    ("RSS MB", 6, lambda f: f.peak_tree_rss_mb, 0, True),
    ("PSS MB", 6, lambda f: f.peak_tree_pss_mb, 0, True),
    ("B/post", 6, lambda f: f.bytes_per_post, 0, True),
    ("lag ms", 6, lambda f: f.loop_lag_max_ms, 0, False),
    ("in fl", 5, lambda f: f.in_flight_peak, 0, False),
    ("mean fl", 7, lambda f: f.in_flight_mean, 0, False),
    ("200", 5, lambda f: f.farm["200"], 0, False),
    ("304", 5, lambda f: f.farm["304"], 0, False),
    ("failed", 6, lambda f: f.failed, 0, False),
    ("farm CPU", 8, lambda f: f.farm["cpu_seconds"], 2, False),
]


def table(results: list[Figures]) -> str:
    """The figures, tool by tool, with a ratio row rssd/peer per scenario and peer."""
    header = f"{'scenario':16} {'tool':11} " + " ".join(f"{h:>{w}}" for h, w, *_ in COLUMNS)
    lines = [header, "-" * len(header)]
    by_key = {(f.tool, f.scenario): f for f in results}
    for scenario in SCENARIOS:
        rows = [by_key[(t, scenario)] for t in TOOLS if (t, scenario) in by_key]
        for f in rows:
            cells = " ".join(f"{_fmt(get(f), d):>{w}}" for _, w, get, d, _ in COLUMNS)
            lines.append(f"{scenario:16} {f.tool:11} {cells}")
        for mine, peer in _pairs(rows):
            cells = " ".join(
                f"{_fmt(_ratio(get(mine), get(peer)) if ratio else None, 2):>{w}}"
                for _, w, get, _, ratio in COLUMNS
                if ratio
            )
            verdict = _verdicts(mine, peer, scenario)
            lines.append(f"{'':16} {mine.tool + '/' + peer.tool:11} {cells}{verdict}")
    rssd = [f for f in results if f.tool in RSSD_TOOLS]
    if rssd:
        worst_rss = max(f.peak_tree_rss_mb for f in rssd)
        cold_lag = next((f.loop_lag_max_ms for f in rssd if f.scenario == "cold"), None)
        lines.append(
            f"rssd peak RSS (tree) {worst_rss:.0f} MB (target <= {RSS_TARGET_MB} MB at 10,000 "
            f"feeds); loop lag during cold {_fmt(cold_lag, 0)} ms (target <= {LAG_TARGET_MS})"
        )
    return "\n".join(lines)


def _pairs(rows: list[Figures]) -> list[tuple[Figures, Figures]]:
    """The ratio rows of a scenario: each rssd against each peer, PostgreSQL against SQLite."""
    pairs = [
        (mine, peer) for mine in rows if mine.tool in RSSD_TOOLS for peer in rows
        if peer.tool not in RSSD_TOOLS
    ]  # fmt: skip
    by_tool = {f.tool: f for f in rows}
    if "rssd" in by_tool and "rssd-pg" in by_tool:
        pairs.append((by_tool["rssd-pg"], by_tool["rssd"]))
    return pairs


def _verdicts(mine: Figures, peer: Figures, scenario: str) -> str:
    """The targets a ratio row is held to: feeds/s against a peer, CPU per check against
    the bare client, PostgreSQL's CPU per check against SQLite's."""
    verdicts = []
    if (peer.tool, scenario) in TARGETS:
        target, stretch = TARGETS[(peer.tool, scenario)]
        speed = _ratio(mine.feeds_per_second, peer.feeds_per_second) or 0.0
        verdict = "met" if speed >= target else "NOT met"
        if stretch and speed >= stretch:
            verdict += ", stretch met"
        verdicts.append(f"feeds/s >= {target:g}x: {verdict}")
    cpu = _ratio(mine.main_cpu_per_1k, peer.main_cpu_per_1k)
    if peer.tool == "bare" and scenario in CPU_TARGETS and cpu is not None:
        target, stretch = CPU_TARGETS[scenario]
        verdict = "met" if cpu <= target else "NOT met"
        if stretch and cpu <= stretch:
            verdict += ", stretch met"
        verdicts.append(f"CPU/check <= {target:g}x: {verdict}")
    if peer.tool == "rssd" and cpu is not None:
        verdict = "met" if cpu <= PG_CPU_TARGET else "NOT met"
        verdicts.append(f"CPU/check <= {PG_CPU_TARGET:g}x SQLite: {verdict}")
    return "  " + "; ".join(verdicts) if verdicts else ""


def machine() -> dict[str, Any]:
    """What the figures were taken on: CPU model, cores, load, Python (another machine's
    figures differ; ratios to the bare client's in the same run travel better)."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


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


def compile_rssd() -> None:
    """Byte-compile rssd's modules, as pip does on a regular install, so that what is
    timed is a check and not the compiler. An editable install (``pip install -e``) leaves
    them uncompiled, and where PYTHONDONTWRITEBYTECODE is set, as on the machine these
    figures come from, Python never caches them: every ``rssd run --once`` compiled its
    modules again, about 0.1 s of CPU charged to rssd's checks and not to the bare client's
    (whose aiohttp pip compiled)."""
    compileall.compile_dir(BENCH.parent / "rssd", quiet=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--items", type=int, default=50, help="posts per feed")
    parser.add_argument("--hosts", type=int, default=50, help="loopback addresses of the farm")
    parser.add_argument("--changed", type=float, default=0.1, help="warm-304: share changed")
    parser.add_argument(
        "--tools", default="rssd,reader", help=f"comma-separated, of {', '.join(TOOLS)}"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated subset of {', '.join(SCENARIOS)}, run in that order",
    )
    parser.add_argument("--reader-workers", type=int, default=20)
    parser.add_argument(
        "--max-concurrency", type=int, help="rssd's max_concurrency (and the bare client's)"
    )
    parser.add_argument(
        "--max-per-host", type=int, help="rssd's max_per_host (and the bare client's)"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="the farm's median response delay"
    )
    parser.add_argument(
        "--latency-sigma", type=float, default=1.0, help="lognormal sigma of the delay"
    )
    parser.add_argument("--seed", type=int, default=1, help="changed feeds, latency draws")
    parser.add_argument("--gzip", action="store_true", help="the farm gzips its bodies")
    profiling = parser.add_mutually_exclusive_group()
    profiling.add_argument(
        "--profile",
        action="store_true",
        help="run rssd under cProfile, main-thread CPU clock (slower; figures marked)",
    )
    profiling.add_argument(
        "--py-spy",
        action="store_true",
        help="run rssd under py-spy record (all threads, idle excluded; figures marked)",
    )
    parser.add_argument(
        "--py-spy-rate",
        type=int,
        default=100,
        help="py-spy's samples a second (a thread of 0.3 s of CPU needs ~1000 to show)",
    )
    parser.add_argument(
        "--py-spy-gil",
        action="store_true",
        help="with --py-spy, only samples of a thread holding the GIL: its Python CPU, "
        "without the time it waits for the GIL, which py-spy otherwise counts as active",
    )
    parser.add_argument(
        "--postgres",
        metavar="SERVER_URL",
        help="the PostgreSQL server of tool rssd-pg (a URL naming any database there; a fresh "
        f"database is created and dropped at the end; default {DEFAULT_PG_SERVER}); with "
        "tool rssd and without rssd-pg: rssd itself runs on PostgreSQL",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of warm-304 and warm-all-304, every tool in turn; the table gives each "
        "tool's median pass (one pass moves 5-15%% from the next on a shared 2-core machine)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases and logs")
    parser.add_argument("--json", type=Path, help="results file (default: bench/results/...)")
    args = parser.parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if unknown := set(tools) - set(TOOLS):
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
    limits = {
        key: value
        for key, value in (
            ("max_concurrency", args.max_concurrency),
            ("max_per_host", args.max_per_host),
        )
        if value is not None
    }
    latency = (
        f"latency median {args.latency_ms:g} ms, lognormal sigma {args.latency_sigma:g}"
        if args.latency_ms > 0
        else "no latency"
    )
    print(
        f"farm: {args.feeds} feeds x {args.items} items on {args.hosts} loopback hosts, "
        f"{latency} ..."
    )
    server = FarmProcess(
        args.feeds,
        args.items,
        args.hosts,
        args.gzip,
        (args.latency_ms, args.latency_sigma, args.seed),
    )
    results: list[Figures] = []
    pg_server = args.postgres or (DEFAULT_PG_SERVER if "rssd-pg" in tools else None)
    postgres = PgDatabase(pg_server, f"rssd_bench_{stamp.lower()}") if pg_server else None
    sqlite_rssd = "rssd-pg" in tools  # both: rssd on SQLite beside rssd-pg
    compile_rssd()
    start_machine = machine()
    try:
        info = server.info
        print(
            f"farm ready: port {server.port}, {info['bytes_total'] / 1e6:.0f} MB of feeds "
            f"rendered in {info['render_seconds']} s; e.g. {info['example']}"
        )
        urls = server.urls(args.feeds)
        runners: list[Tool] = []
        for name in tools:
            workdir = run_dir / name
            workdir.mkdir()
            if name in RSSD_TOOLS:
                profiler = "cprofile" if args.profile else "py-spy" if args.py_spy else None
                on_pg = name == "rssd-pg" or not sqlite_rssd
                runners.append(
                    Rssd(
                        workdir,
                        urls,
                        run_dir,
                        limits,
                        profiler,
                        postgres=postgres if on_pg else None,
                        name=name,
                        py_spy_rate=args.py_spy_rate,
                        py_spy_gil=args.py_spy_gil,
                    )
                )
            elif name == "bare":
                runners.append(Bare(workdir, urls, limits))
            else:
                runners.append(Reader(workdir, urls, args.reader_workers))
        results.extend(
            run_all(
                runners,
                server,
                args.feeds,
                args.changed,
                scenarios,
                latency=args.latency_ms > 0,
                repeat=max(1, args.repeat),
            )
        )
    finally:
        server.stop()
        if postgres is not None and not args.keep:
            postgres.drop()
    elapsed = time.monotonic() - started

    print()
    rssd_limits = ", ".join(f"{k} {v}" for k, v in limits.items()) or "config.toml's limits"
    print(
        f"{args.feeds:,} feeds x {args.items} items, {args.hosts} loopback hosts, {latency}; "
        f"{rssd_limits}; {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs (shared with the farm); bench took {elapsed:.0f} s"
        + ("; rssd under cProfile" if args.profile else "")
        + ("; rssd under py-spy" if args.py_spy else "")
        + ("; rssd on PostgreSQL" if postgres and not sqlite_rssd else "; rssd on SQLite")
        + (f"; warm scenarios: the median of {args.repeat} passes" if args.repeat > 1 else "")
    )
    end_machine = machine()
    print(
        f"machine: {start_machine['cpu_model']}, {start_machine['cores']} cores; load average "
        f"{start_machine['load_avg'][0]:.2f} at the start, {end_machine['load_avg'][0]:.2f} at "
        f"the end. main ms/chk: the rssd (or bare) process's own CPU per feed checked."
    )
    passes, results = results, median_passes(results)
    print(table(results))
    if args.repeat > 1:
        print(rounds_summary(passes))
    bare_cpu = {f.scenario: f.main_cpu_per_1k for f in results if f.tool == "bare"}
    out = args.json or RESULTS / f"{stamp}-n{args.feeds}.json"
    out.write_text(
        json.dumps(
            {
                "feeds": args.feeds,
                "items": args.items,
                "hosts": args.hosts,
                "changed": args.changed,
                "latency_median_ms": args.latency_ms,
                "latency_sigma": args.latency_sigma,
                "seed": args.seed,
                "limits": limits,
                "rssd_backend": "postgresql" if postgres and not sqlite_rssd else "sqlite",
                "machine": start_machine,
                "load_avg_end": end_machine["load_avg"],
                "profiled": "cprofile" if args.profile else "py-spy" if args.py_spy else None,
                "elapsed_seconds": round(elapsed, 1),
                "repeat": args.repeat,
                "results": [
                    {
                        **asdict(f),
                        "feeds_per_second": round(f.feeds_per_second, 1),
                        "cpu_seconds_per_1k_feeds": round(f.cpu_per_1k, 2),
                        "main_cpu_seconds_per_1k_feeds": round(f.main_cpu_per_1k, 2),
                        "main_cpu_ms_per_check": round(f.main_cpu_per_1k, 3),
                        "main_cpu_ratio_to_bare": _round(
                            _ratio(f.main_cpu_per_1k, bare_cpu.get(f.scenario))
                        ),
                        "db_bytes_per_post": round(f.bytes_per_post),
                    }
                    for f in results
                ],
                # Every pass of the repeated scenarios, in the order run.
                "passes": [
                    {
                        "tool": f.tool,
                        "scenario": f.scenario,
                        "main_cpu_ms_per_check": round(f.main_cpu_per_1k, 3),
                        "feeds_per_second": round(f.feeds_per_second, 1),
                        "load_avg": f.load_avg,
                        "farm": f.farm,
                    }
                    for f in passes
                    if f.scenario in REPEATABLE
                ],
            },
            indent=2,
        )
    )
    print(f"results: {out}")
    profiled = [t for t in tools if t in RSSD_TOOLS]  # one file per tool and scenario
    if args.py_spy:
        for tool, scenario in itertools.product(profiled, scenarios):
            print(f"py-spy profile: {run_dir / f'{tool}-{scenario}.pyspy.txt'}")
    if args.profile:
        for tool, scenario in itertools.product(profiled, SCENARIOS):
            prof = run_dir / f"{tool}-{scenario}.prof"
            if prof.exists():
                print(f"{tool}, {scenario}:")
                print_profile(prof)
    if not args.keep:
        for name in tools:
            shutil.rmtree(run_dir / name, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
