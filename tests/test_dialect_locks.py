"""The dialect's lock fragments on a real PostgreSQL: every key locked, in one statement."""

from __future__ import annotations

import json

from rssd.repo.db import Tx
from rssd.repo.dialect import POSTGRES
from rssd.repo.postgres import PostgresDatabase
from tests.support.postgres import fresh_database


async def test_xact_locks_takes_each_key_until_the_transaction_ends() -> None:
    keys = [f"rssd.host:h{n}.example" for n in (3, 1, 2)]
    async with fresh_database() as url:
        db = await PostgresDatabase.connect(url)
        try:

            async def locked(tx: Tx) -> list[int]:
                await tx.fetchall(POSTGRES.xact_locks, {"lock_keys": json.dumps(keys)})
                rows = await tx.fetchall(
                    "SELECT objid FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid() ORDER BY objid"
                )
                return [int(row["objid"]) for row in rows]

            held = await db.write(locked)
            expected = await db.fetchall(
                "SELECT CAST(hashtext(k) AS oid) AS objid FROM "
                "jsonb_array_elements_text(CAST(:keys AS jsonb)) AS k ORDER BY 1",
                {"keys": json.dumps(keys)},
            )
            assert held == [int(row["objid"]) for row in expected]
            # Released at COMMIT. (A daemon's session locks in this database, or in others
            # on the server, are not ours: only transaction-level ones of this database.)
            after = await db.fetchall(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND d.datname = current_database() "
                "AND l.objid IN (SELECT CAST(hashtext(k) AS oid) FROM "
                "jsonb_array_elements_text(CAST(:keys AS jsonb)) AS k)",
                {"keys": json.dumps(keys)},
            )
            assert after[0][0] == 0
        finally:
            await db.close()
