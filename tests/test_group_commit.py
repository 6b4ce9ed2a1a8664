"""Write transactions side by side: each all-or-nothing, whatever its neighbours do.

On both backends the writes that queue up while one commits go in the next commit
together, a savepoint each (rssd/repo/sqlite_writer.py: the writer's thread;
rssd/repo/pg_writer.py: the writer's task). The caller sees the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

import psycopg
import pytest

from rssd.clock import to_iso
from rssd.repo.db import Database, Tx, is_driver_error
from rssd.repo.postgres import PostgresDatabase
from rssd.repo.sqlite import SqliteDatabase
from rssd.repo.sqlite_writer import MAX_BATCH, run_batch
from tests.support.postgres import fresh_database

pytestmark = pytest.mark.both_backends

INSERT = (
    "INSERT INTO content_sources (url, interval_minutes, timeout_seconds, created_at, "
    "updated_at) VALUES (:url, 60, 30.0, 'now', 'now')"
)


def inserting(url: str, *, then_fail: bool = False) -> Callable[[Tx], Awaitable[str]]:
    async def work(tx: Tx) -> str:
        await tx.execute(INSERT, {"url": url})
        if then_fail:
            raise ValueError(f"refused {url}")
        return url

    return work


async def urls(db: Database) -> list[str]:
    return [row[0] for row in await db.fetchall("SELECT url FROM content_sources ORDER BY id")]


async def test_a_failing_write_among_many_takes_only_itself_back(db: Database) -> None:
    works = [inserting(f"http://{n}/", then_fail=n % 3 == 1) for n in range(30)]
    results = await asyncio.gather(*(db.write(w) for w in works), return_exceptions=True)
    for n, result in enumerate(results):
        if n % 3 == 1:
            assert isinstance(result, ValueError) and str(result) == f"refused http://{n}/"
        else:
            assert result == f"http://{n}/"
    assert sorted(await urls(db)) == sorted(f"http://{n}/" for n in range(30) if n % 3 != 1)


async def test_a_constraint_error_reaches_its_own_caller_only(db: Database) -> None:
    await db.write(inserting("http://taken/"))
    results = await asyncio.gather(
        db.write(inserting("http://a/")),
        db.write(inserting("http://taken/")),  # url is UNIQUE
        db.write(inserting("http://b/")),
        return_exceptions=True,
    )
    assert results[0] == "http://a/" and results[2] == "http://b/"
    assert "unique" in str(results[1]).lower()
    assert sorted(await urls(db)) == ["http://a/", "http://b/", "http://taken/"]


async def test_sqlite_writes_keep_the_order_they_were_asked_in(tmp_path: Path) -> None:
    """SQLite's one writer queue: each write sees the earlier ones and none of the later
    (on PostgreSQL concurrent transactions are concurrent; order is not promised)."""
    db = await SqliteDatabase.open_file(tmp_path / "rssd.sqlite3")

    async def append(tx: Tx, n: int) -> int:
        row = await tx.fetchone("SELECT count(*) FROM content_sources")
        assert row is not None
        await tx.execute(INSERT, {"url": f"http://{n}/{row[0]}"})
        return int(row[0])

    try:
        seen = await asyncio.gather(*(db.write(partial(append, n=n)) for n in range(100)))
    finally:
        await db.close()
    assert seen == list(range(100))  # each saw every earlier write, none of the later ones


async def test_queued_writes_share_commits_on_sqlite(tmp_path: Path) -> None:
    """What group commit is for: writes asked for one after another commit one by one;
    200 asked for at once share a few commits, every row kept."""
    db = await SqliteDatabase.open_file(tmp_path / "rssd.sqlite3")
    try:
        for n in range(20):
            await db.write(inserting(f"http://one-by-one/{n}"))
        assert db.commits == 20
        together = [db.write(inserting(f"http://together/{n}")) for n in range(200)]
        await asyncio.gather(*together)
        assert 20 + max(1, 200 // MAX_BATCH) <= db.commits <= 20 + 200 // 2
        assert len(await urls(db)) == 220
    finally:
        await db.close()


def test_run_batch_refuses_a_write_that_awaits_anything_but_its_statements(
    tmp_path: Path,
) -> None:
    """A write runs whole in SQLite's thread: awaiting a sleep there cannot go on, and is
    reported as the programming error it is, rolled back, the batch's others kept."""
    conn = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    conn.execute("CREATE TABLE t (v TEXT)")

    async def sleeper(tx: Tx) -> None:
        await tx.execute("INSERT INTO t VALUES ('sleeper')")
        await asyncio.sleep(0)

    async def plain(tx: Tx) -> str:
        await tx.execute("INSERT INTO t VALUES ('plain')")
        return "ok"

    first, second = run_batch([sleeper, plain], conn)
    assert isinstance(first.error, RuntimeError)
    assert "awaited something other than its statements" in str(first.error)
    assert second.value == "ok" and second.error is None
    assert conn.execute("SELECT v FROM t").fetchall() == [("plain",)]
    assert not conn.in_transaction
    conn.close()


@pytest.mark.parametrize("fails", [False, True])
def test_a_lone_write_is_its_own_transaction_committed_or_rolled_back(
    tmp_path: Path, fails: bool
) -> None:
    """A batch of one work needs no savepoint: its transaction commits with it, or rolls
    back for it and the error reaches it, and the connection is ready for the next."""
    conn = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    conn.execute("CREATE TABLE t (v TEXT)")
    traced: list[str] = []
    conn.set_trace_callback(traced.append)

    async def work(tx: Tx) -> str:
        await tx.execute("INSERT INTO t VALUES ('alone')")
        if fails:
            raise ValueError("refused")
        return "ok"

    (outcome,) = run_batch([work], conn)
    if fails:
        assert isinstance(outcome.error, ValueError) and outcome.value is None
        assert conn.execute("SELECT v FROM t").fetchall() == []
    else:
        assert outcome.value == "ok" and outcome.error is None
        assert conn.execute("SELECT v FROM t").fetchall() == [("alone",)]
    assert not conn.in_transaction
    assert not [sql for sql in traced if "SAVEPOINT" in sql.upper()]
    (again,) = run_batch([_plain], conn)
    assert again.value == "plain"
    conn.close()


async def _plain(tx: Tx) -> str:
    await tx.execute("INSERT INTO t VALUES ('plain')")
    return "plain"


async def test_queued_writes_share_commits_on_postgresql() -> None:
    """PostgreSQL's writer too: one by one, a commit each; 200 at once, a few commits."""
    async with fresh_database() as url:
        db = await PostgresDatabase.connect(url)
        try:
            commits = db.commits
            for n in range(20):
                await db.write(inserting(f"http://one-by-one/{n}"))
            assert db.commits == commits + 20
            await asyncio.gather(*(db.write(inserting(f"http://together/{n}")) for n in range(200)))
            assert commits + 21 <= db.commits <= commits + 20 + 200 // 2
            assert len(await urls(db)) == 220
        finally:
            await db.close()


@contextlib.asynccontextmanager
async def written_once() -> AsyncIterator[tuple[PostgresDatabase, str, int]]:
    """A database on a fresh PostgreSQL database with one write done: it, the database's
    URL, and the process id of the writer's connection on the server."""
    async with fresh_database() as url:
        db = await PostgresDatabase.connect(url)
        try:
            await db.write(inserting("http://before/"))
            writer = db._writer._conn
            assert writer is not None
            yield db, url, writer.info.backend_pid
        finally:
            await db.close()


async def test_postgresql_writer_reconnects_after_its_connection_is_killed() -> None:
    """The server ends the writer's connection (a restart, pg_terminate_backend): the
    next write runs on a new connection; nothing is lost or doubled."""
    async with written_once() as (db, url, pid):
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            cursor = await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            assert await cursor.fetchone() == (True,)
        assert await db.write(inserting("http://after/")) == "http://after/"
        assert await urls(db) == ["http://before/", "http://after/"]


async def test_a_write_whose_connection_is_killed_mid_statement_fails_alone() -> None:
    """The server ends the writer's connection while a statement runs (libpq's blocking
    call is waiting for its answer): that write fails with the driver's error, and the
    next one runs on a new connection."""

    async def slow(tx: Tx) -> None:
        await tx.execute(INSERT, {"url": "http://lost/"})
        await tx.execute("SELECT pg_sleep(30)")

    async with written_once() as (db, url, pid):
        waiting = asyncio.create_task(db.write(slow))
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            for _ in range(100):  # until the sleep runs
                cursor = await admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND query LIKE %s",
                    (pid, "%pg_sleep%"),
                )
                if await cursor.fetchone() == (1,):
                    break
                await asyncio.sleep(0.05)
            await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(Exception) as failed:
            await asyncio.wait_for(waiting, 20)
        assert is_driver_error(failed.value)
        assert await db.write(inserting("http://after/")) == "http://after/"
        assert await urls(db) == ["http://before/", "http://after/"]


async def test_the_works_of_a_batch_share_the_transactions_clock() -> None:
    """``Tx.now()`` on PostgreSQL is the transaction's start: one reading for every work
    of a batch (the writer asks once a batch), a new one for each batch."""
    async with fresh_database() as url:
        db = await PostgresDatabase.connect(url)
        try:

            async def stamp(tx: Tx, n: int) -> str:
                first = await tx.now()
                await tx.execute(INSERT, {"url": f"http://{n}/"})
                assert await tx.now() == first
                return first.isoformat()

            before = db.commits
            stamps = await asyncio.gather(*(db.write(partial(stamp, n=n)) for n in range(40)))
            assert len(await urls(db)) == 40
            assert len(set(stamps)) == db.commits - before  # one reading per transaction
        finally:
            await db.close()


async def test_the_clock_a_work_gets_is_its_transactions_now() -> None:
    """The writer reads ``now()`` with its BEGIN, in one round trip: what a work gets is
    the server's ``now()`` in that transaction, to the millisecond, alone or in a batch."""
    async with fresh_database() as url:
        db = await PostgresDatabase.connect(url)
        try:

            async def compare(tx: Tx, n: int) -> bool:
                await tx.execute(INSERT, {"url": f"http://{n}/"})
                row = await tx.fetchone("SELECT now() AS now")
                assert row is not None
                return to_iso(await tx.now()) == str(row["now"])

            assert await db.write(partial(compare, n=0))
            assert all(
                await asyncio.gather(*(db.write(partial(compare, n=n)) for n in range(1, 30)))
            )
        finally:
            await db.close()


async def test_a_work_that_swallows_a_failed_statement_does_not_pass_for_committed() -> None:
    """On PostgreSQL a failed statement aborts the transaction, and COMMIT then rolls it
    back without an error: the writer says so to the work's caller instead of returning
    its value as if it had been stored."""
    async with fresh_database() as url:
        db = await PostgresDatabase.connect(url)
        try:

            async def swallowing(tx: Tx) -> str:
                await tx.execute(INSERT, {"url": "http://kept?/"})
                with contextlib.suppress(psycopg.Error):
                    await tx.execute("SELECT 1 / 0")
                return "done"

            with pytest.raises(psycopg.errors.InFailedSqlTransaction):
                await db.write(swallowing)
            assert await urls(db) == []
            assert await db.write(inserting("http://after/")) == "http://after/"
        finally:
            await db.close()


async def test_writes_made_while_held_wait_and_share_the_holders_commit(db: Database) -> None:
    """A lingering batch holds the writes made meanwhile (``hold_writes``): they wait, and
    go with the holder's own write, in one commit, instead of one commit each."""
    before = db.commits  # type: ignore[attr-defined]
    with db.hold_writes():
        early = [asyncio.create_task(db.write(inserting(f"http://held-{n}/"))) for n in range(3)]
        await asyncio.sleep(0.05)
        assert not any(task.done() for task in early)
        assert await urls(db) == []  # nothing of them committed yet
    own = asyncio.create_task(db.write(inserting("http://holder/")))
    assert await asyncio.gather(*early, own) == [*(f"http://held-{n}/" for n in range(3)),
                                                  "http://holder/"]  # fmt: skip
    assert db.commits - before == 1  # type: ignore[attr-defined]
    expected = ["http://holder/", *(f"http://held-{n}/" for n in range(3))]
    assert sorted(await urls(db)) == sorted(expected)


async def test_a_held_write_cancelled_while_waiting_leaves_the_others_waiting(
    db: Database,
) -> None:
    """One waiter cancelled does not end the others' wait (the wait is shielded), and the
    write it asked for still runs: a cancelled caller waits for its transaction, as ever."""
    with db.hold_writes():
        first = asyncio.create_task(db.write(inserting("http://first/")))
        second = asyncio.create_task(db.write(inserting("http://second/")))
        await asyncio.sleep(0.01)
        first.cancel()
        await asyncio.sleep(0.01)
        assert not second.done()
    assert await second == "http://second/"
    with contextlib.suppress(asyncio.CancelledError):
        await first
    assert first.cancelled()
    assert sorted(await urls(db)) == ["http://first/", "http://second/"]


async def test_holds_nest_and_writes_go_when_the_last_one_ends(db: Database) -> None:
    with db.hold_writes():
        with db.hold_writes():
            task = asyncio.create_task(db.write(inserting("http://nested/")))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        assert not task.done()  # the outer hold still stands
    assert await task == "http://nested/"


def inserting_together(*urls: str) -> Callable[[Tx], Awaitable[list[str]]]:
    """A work whose statements go together (``Tx.fetchall_after``): an insert of each url
    but the last, then the last's insert, which returns every url stored so far."""

    async def work(tx: Tx) -> list[str]:
        params = {f"u{n}": url for n, url in enumerate(urls)}
        first = [INSERT.replace(":url", f":u{n}") for n in range(len(urls) - 1)]
        last = f"{INSERT.replace(':url', f':u{len(urls) - 1}')} RETURNING url"
        rows = await tx.fetchall_after(first, last, params)
        seen = await tx.fetchall("SELECT url FROM content_sources ORDER BY id")
        return [*(row[0] for row in rows), *(row[0] for row in seen)]

    return work


async def test_statements_sent_together_each_see_the_ones_before(db: Database) -> None:
    """The rows are the last statement's; the statements before it ran first, in order,
    in the same transaction."""
    stored = await db.write(inserting_together("http://a/", "http://b/", "http://c/"))
    assert stored == ["http://c/", "http://a/", "http://b/", "http://c/"]


async def test_a_statement_sent_together_that_fails_takes_back_its_work_only(
    db: Database,
) -> None:
    """Among works sharing a commit (a savepoint each, sent with the work's first
    statements), the one whose last statement fails loses the statements sent with it,
    and only its caller hears of it."""
    await db.write(inserting("http://taken/"))
    before = db.commits  # type: ignore[attr-defined]
    with db.hold_writes():  # the three go in one commit, a savepoint each
        asked = [
            asyncio.create_task(db.write(work))
            for work in (
                inserting_together("http://a/", "http://b/"),
                inserting_together("http://lost/", "http://taken/"),  # url is UNIQUE
                inserting("http://c/"),
            )
        ]
        await asyncio.sleep(0.01)
    results = await asyncio.gather(*asked, return_exceptions=True)
    assert db.commits - before == 1  # type: ignore[attr-defined]
    assert results[0] == ["http://b/", "http://taken/", "http://a/", "http://b/"]
    assert "unique" in str(results[1]).lower()
    assert results[2] == "http://c/"
    assert sorted(await urls(db)) == ["http://a/", "http://b/", "http://c/", "http://taken/"]


async def test_a_writes_statements_answer_as_the_driver_does(db: Database) -> None:
    """The writer's statements (on PostgreSQL straight through libpq, ``pg_writer.
    run_query``): ``execute`` gives the rows the last statement touched, rows come by name
    and position, and a failing statement raises the driver's own error, with PostgreSQL's
    SQLSTATE, so that callers can tell what failed."""
    await db.write(inserting("http://a/"))
    await db.write(inserting("http://b/"))

    async def touch(tx: Tx) -> tuple[int, int, list[tuple[str, int]]]:
        touched = await tx.execute("UPDATE content_sources SET interval_minutes = 5")
        none = await tx.execute("UPDATE content_sources SET interval_minutes = 5 WHERE id < 0")
        rows = await tx.fetchall(
            "SELECT url, interval_minutes AS minutes FROM content_sources ORDER BY url"
        )
        return touched, none, [(row["url"], row[1]) for row in rows]

    assert await db.write(touch) == (2, 0, [("http://a/", 5), ("http://b/", 5)])
    with pytest.raises(Exception) as failed:
        await db.write(inserting("http://a/"))  # url is UNIQUE
    assert is_driver_error(failed.value)
    if isinstance(db, PostgresDatabase):
        assert isinstance(failed.value, psycopg.errors.UniqueViolation)
        assert failed.value.sqlstate == "23505"
        assert failed.value.diag.constraint_name is not None
