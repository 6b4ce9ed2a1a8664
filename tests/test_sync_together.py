"""Daemons started together on a fresh PostgreSQL database sync the same config.toml at
once: none may fail (the issue saw ``duplicate key ... users_name_key`` in 4 of 5 trials),
and the database ends with each user and subscription once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rssd.daemon.startup import sync_sources
from rssd.repo.open import open_database
from tests.support.webhooks import make_config, user

#: PostgreSQL only: on SQLite one daemon owns the database.
pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

DAEMONS = 6
FEEDS = [f"http://feeds.example/{n}" for n in range(5)]


async def test_daemons_syncing_at_once_on_a_fresh_database_all_succeed(
    db_target: str, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path,
        FEEDS,
        [user(name, f"http://hooks.example/{name}", FEEDS) for name in ("alice", "bob", "carol")],
    )
    databases = [await open_database(db_target) for _ in range(DAEMONS)]
    try:
        for _ in range(3):  # rounds: the race needs to be met, not hoped for
            await databases[0].write_one("DELETE FROM users")
            await databases[0].write_one("DELETE FROM config_sync")
            results = await asyncio.gather(
                *(sync_sources(db, config, daemon_id=f"d{n}") for n, db in enumerate(databases)),
                return_exceptions=True,
            )
            assert [r for r in results if isinstance(r, BaseException)] == []
        db = databases[0]
        rows = await db.fetchall("SELECT name FROM users ORDER BY name")
        assert [row[0] for row in rows] == ["alice", "bob", "carol"]
        row = await db.fetchone("SELECT count(*) FROM subscriptions")
        assert row is not None and row[0] == 3 * len(FEEDS)
    finally:
        for db in databases:
            await db.close()
