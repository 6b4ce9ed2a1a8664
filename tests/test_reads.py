"""``Database.read`` runs each statement on its own (autocommit); ``Database.snapshot`` runs
them in one transaction that sees one state. On both backends: a read on PostgreSQL in a
transaction block cost two round trips more than its statement."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from rssd.repo.db import Database, Tx
from rssd.repo.sources import SourceRepo
from tests.support.config import make_config

pytestmark = pytest.mark.both_backends


async def test_a_read_sees_what_commits_between_its_statements_and_a_snapshot_does_not(
    db: Database, tmp_path: Path
) -> None:
    added = itertools.count()
    urls = ["http://a.example/"]
    await SourceRepo(db).sync(make_config(tmp_path, urls))

    async def count(tx: Tx) -> int:
        row = await tx.fetchone("SELECT count(*) AS n FROM content_sources")
        assert row is not None
        return int(row["n"])

    async def with_a_commit_between(tx: Tx) -> tuple[int, int]:
        before = await count(tx)
        urls.append(f"http://new{next(added)}.example/")
        await SourceRepo(db).sync(make_config(tmp_path, urls))
        return before, await count(tx)

    assert await db.read(with_a_commit_between) == (1, 2), "a read: each statement alone"
    assert await db.snapshot(with_a_commit_between) == (2, 2), "a snapshot: one state"
    assert await db.read(count) == 3


async def test_on_postgresql_each_statement_of_a_read_is_its_own_transaction(
    db: Database,
) -> None:
    if not db.shared:
        pytest.skip("SQLite's reads are autocommit statements on their own connection")

    async def transactions(tx: Tx) -> list[int]:
        rows = [await tx.fetchone("SELECT txid_current() AS t") for _ in range(2)]
        return [int(row["t"]) for row in rows if row is not None]

    first, second = await db.read(transactions)
    assert first != second, "no BEGIN ... COMMIT around a read's statements"
    first, second = await db.snapshot(transactions)
    assert first == second
