"""One statement's client CPU: what the PostgreSQL driver costs per statement, against
SQLite's in-process call.

    .venv/bin/python bench/statement_cost.py [--postgres URL] [--statements 3000]

rssd's writer runs about 1,300 statements a pass of 2,000 feeds (bench/README.md). On
PostgreSQL each is a psycopg call in this process and the query's work in the server's;
on SQLite the query runs here, in C. This times, as CPU of this process per statement
(``time.process_time``, the kernel's share of the socket calls included), the same small
parameterised SELECT five ways: psycopg's ``ClientCursor`` with a new cursor each time (as
rssd's writer did until the seventeenth round), one cursor reused, rssd's writer now
(``ThreadTx``: the parameters bound by a client-side cursor's ``mogrify``, then one libpq
``exec``; a new ``ThreadTx`` each, where a work's statements share one), libpq's own
``exec`` through ``psycopg.pq`` with no Python around it (the floor of any driver here),
and ``sqlite3`` in memory. Each way runs ``--statements`` times after a warm-up, three
rounds, and the median round is printed.
There is no bare client here: microseconds of this machine, to compare with each other.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from psycopg import ClientCursor
from run import DEFAULT_PG_SERVER, machine

from rssd.repo.group_commit import run_to_end
from rssd.repo.postgres import ADAPTERS, ThreadTx

QUERY = "SELECT %(a)s::int + %(b)s::int, %(c)s"
#: The same in rssd's own form (``:name``), for its writer's ``ThreadTx``.
RSSD_QUERY = "SELECT :a::int + :b::int, :c"
PARAMS = {"a": 1, "b": 2, "c": "x"}
RAW = b"SELECT 1::int + 2::int, 'x'"
ROUNDS = 3


def _per_call_us(call: Callable[[], object], count: int) -> float:
    for _ in range(min(count, 200)):  # warm-up: caches, the server's plan
        call()
    rounds = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(count):
            call()
        rounds.append((time.process_time() - started) / count * 1e6)
    return statistics.median(rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--postgres", default=DEFAULT_PG_SERVER, metavar="URL")
    parser.add_argument("--statements", type=int, default=3000)
    args = parser.parse_args(argv)
    conn = psycopg.connect(
        args.postgres, autocommit=True, context=ADAPTERS, cursor_factory=ClientCursor
    )
    lite = sqlite3.connect(":memory:")
    try:
        reused = conn.cursor()
        pgconn = conn.pgconn
        ways: list[tuple[str, Callable[[], object]]] = [
            (
                "psycopg ClientCursor, a new cursor each",
                lambda: conn.execute(QUERY, PARAMS).fetchall(),
            ),
            (
                "psycopg ClientCursor, one cursor reused",
                lambda: reused.execute(QUERY, PARAMS).fetchall(),
            ),
            (
                "rssd's writer: a new ThreadTx, fetchall (mogrify, one libpq exec)",
                lambda: run_to_end(ThreadTx(conn).fetchall(RSSD_QUERY, PARAMS)),
            ),
            (
                "libpq exec (psycopg.pq), no Python around",
                lambda: pgconn.exec_(RAW).get_value(0, 0),
            ),
            (
                "sqlite3, in memory",
                lambda: lite.execute("SELECT :a + :b, :c", PARAMS).fetchall(),
            ),
        ]
        figures = [(name, _per_call_us(call, args.statements)) for name, call in ways]
    finally:
        conn.close()
        lite.close()
    host = machine()
    print(
        f"client CPU per statement, {args.statements} statements x {ROUNDS} rounds, median "
        f"round; machine: {host['cpu_model']}, {host['cores']} cores, load average "
        f"{host['load_avg'][0]}; {host['python']}"
    )
    for name, micros in figures:
        print(f"  {micros:7.1f} us  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
