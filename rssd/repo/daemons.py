"""DaemonRepo: the daemons working on this database, each with its heartbeat.

Each daemon writes its row at start, refreshes it as it renews its leases, and removes it
at a clean stop; a row whose heartbeat stopped is a daemon that died (its jobs come back
when their leases expire). ``rssd status`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from rssd.clock import now_iso, to_iso
from rssd.repo.db import Database, Tx

_UPSERT = """
INSERT INTO daemons (id, hostname, pid, started_at, heartbeat_at, in_flight, config_hash)
VALUES (:id, :hostname, :pid, :now, :now, :in_flight, :config_hash)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
    in_flight = excluded.in_flight, config_hash = excluded.config_hash
"""


#: A daemon silent for one lease (rssd.repo.claims.LEASE_SECONDS) is gone: its leases
#: have expired and its jobs are back with the others. ``rssd status`` says so.
GONE_AFTER = timedelta(seconds=30)


@dataclass(frozen=True)
class DaemonRow:
    id: str
    hostname: str
    pid: int
    started_at: str
    heartbeat_at: str
    in_flight: int  # its ONGOING jobs right now (not the heartbeat's snapshot)
    config_hash: str | None


@dataclass(frozen=True)
class Identity:
    """Who this daemon is, as recorded in ``daemons``."""

    id: str
    hostname: str
    pid: int


class DaemonRepo:
    def __init__(self, db: Database, me: Identity) -> None:
        self._db = db
        self.me = me

    async def beat(self, in_flight: int, config_hash: str | None) -> None:
        """Insert or refresh this daemon's row."""
        params = {
            "id": self.me.id,
            "hostname": self.me.hostname,
            "pid": self.me.pid,
            "now": now_iso(),
            "in_flight": in_flight,
            "config_hash": config_hash,
        }

        async def work(tx: Tx) -> None:
            await tx.execute(_UPSERT, params | {"now": to_iso(await tx.now())})

        await self._db.write(work)

    async def leave(self) -> None:
        await self._db.write(
            lambda tx: tx.execute("DELETE FROM daemons WHERE id = :id", {"id": self.me.id})
        )


async def forget_silent(tx: Tx, before: str) -> int:
    """Drop rows of daemons silent since ``before`` (long dead: their jobs are back)."""
    return await tx.execute("DELETE FROM daemons WHERE heartbeat_at < :before", {"before": before})


async def list_daemons(db: Database) -> list[DaemonRow]:
    # Fetches in flight are counted from fetch_job: the heartbeat's count is up to 10 s old
    # and misses most short fetches.
    rows = await db.fetchall(
        "SELECT d.id, d.hostname, d.pid, d.started_at, d.heartbeat_at, d.config_hash, "
        "(SELECT count(*) FROM fetch_job f WHERE f.status = 'ONGOING' "
        "AND f.claimed_by = d.id) AS in_flight "
        "FROM daemons d ORDER BY d.hostname, d.pid, d.id"
    )
    return [
        DaemonRow(
            row["id"],
            row["hostname"],
            row["pid"],
            row["started_at"],
            row["heartbeat_at"],
            row["in_flight"],
            row["config_hash"],
        )
        for row in rows
    ]
