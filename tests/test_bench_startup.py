"""bench/startup.py runs end to end on a tiny farm: each tree and the bare client are
stopped at their first request, every run, with the CPU they spent until then. Behaviour
only: no figure is judged beyond being one. (A directory without rssd is refused: with
interleave.py's, in tests/test_bench_interleave.py.)"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.support.bench import json_lines, load_bench
from tests.support.postgres import ADMIN_URL, admin_connection

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_each_tree_and_the_bare_client_get_a_figure_per_run() -> None:
    rows = json_lines(
        "startup.py", "--feeds", "12", "--hosts", "2", "--runs", "2", "--json", str(ROOT)
    )
    assert [row["tool"].split(":")[0] for row in rows] == ["0", "bare"]
    for row in rows:
        assert len(row["cpu_ms_to_first_request"]) == 2
        assert all(value > 0 for value in row["cpu_ms_to_first_request"])


def test_on_postgresql_every_run_gets_a_figure_and_no_database_is_left() -> None:
    """Every database the script made is dropped at the end."""
    with admin_connection() as conn:
        before = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    rows = json_lines(
        "startup.py", "--feeds", "12", "--hosts", "2", "--runs", "2", "--json",
        "--postgres", ADMIN_URL, str(ROOT),
    )  # fmt: skip
    assert [row["tool"].split(":")[0] for row in rows] == ["0", "bare"]
    assert all(len(row["cpu_ms_to_first_request"]) == 2 for row in rows)
    with admin_connection() as conn:
        after = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert after == before


def test_a_database_set_aside_is_restored_as_it_was_under_its_own_name() -> None:
    """What each run of ``--postgres`` starts from: the warm database as it was, under
    the name config.toml gives, whatever the run before wrote; both gone after drop."""
    run = load_bench("run")
    database = run.PgDatabase(ADMIN_URL, "rssd_test_aside")
    try:
        with psycopg.connect(database.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (n integer)")
            conn.execute("INSERT INTO t VALUES (1)")
        database.set_aside()
        for written in (2, 3):
            database.restore()
            with psycopg.connect(database.url, autocommit=True) as conn:
                assert [row[0] for row in conn.execute("SELECT n FROM t")] == [1]
                conn.execute("INSERT INTO t VALUES (%s)", (written,))
    finally:
        database.drop()
    with admin_connection() as conn:
        names = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert not names & {"rssd_test_aside", "rssd_test_aside_aside"}
