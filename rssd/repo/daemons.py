"""DaemonRepo: the daemons working on this database, each with its heartbeat.

Each daemon writes its row at start, refreshes it as it renews its leases, and removes it
at a clean stop; a row whose heartbeat stopped is a daemon that died (its jobs come back
when their leases expire). ``rssd status`` lists them.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import timedelta

from msgspec import Struct

from rssd.clock import now_iso, to_iso
from rssd.repo.db import Database, Tx

_UPSERT = """
INSERT INTO daemons (id, hostname, pid, started_at, heartbeat_at, in_flight, config_hash,
    database_wait_since)
VALUES (:id, :hostname, :pid, :now, :now, :in_flight, :config_hash, :wait_since)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
    in_flight = excluded.in_flight, config_hash = excluded.config_hash,
    database_wait_since = excluded.database_wait_since
"""

#: A database call this long is a wait worth showing (a lock), not a query being answered.
WAIT_SHOWN_AFTER = 1.0


#: A daemon silent for one lease (rssd.repo.claims.LEASE_SECONDS) is gone: its leases
#: have expired and its jobs are back with the others. ``rssd status`` says so.
GONE_AFTER = timedelta(seconds=30)


class DaemonRow(Struct, frozen=True):
    id: str
    hostname: str
    pid: int
    started_at: str
    heartbeat_at: str
    #: Its ONGOING jobs right now (not the heartbeat's snapshot); None: fetch_job could
    #: not be read (locked).
    in_flight: int | None
    config_hash: str | None
    #: Since when its scheduler has been waiting on the database (as of its last beat).
    database_wait_since: str | None = None


class Identity(Struct, frozen=True):
    """Who this daemon is, as recorded in ``daemons``."""

    id: str
    hostname: str
    pid: int


def new_identity() -> Identity:
    """host:pid:random, unique even when a pid is reused after a restart, or by a process
    of the same pid on another machine of the same name (containers): a claim is read
    back as this process's by it (``ClaimRepo``)."""
    host = socket.gethostname()
    pid = os.getpid()
    return Identity(f"{host}:{pid}:{secrets.token_hex(3)}", host, pid)


class DaemonRepo:
    def __init__(self, db: Database, me: Identity) -> None:
        self._db = db
        self.me = me

    async def beat(self, in_flight: int, config_hash: str | None, waiting: float = 0.0) -> None:
        """Insert or refresh this daemon's row; ``waiting``: how long its scheduler has been
        waiting for one database call. Written aside from the daemon's other writes, which
        may be the ones waiting (a locked fetch_job): the row says so meanwhile."""
        params = {
            "id": self.me.id,
            "hostname": self.me.hostname,
            "pid": self.me.pid,
            "now": now_iso(),
            "in_flight": in_flight,
            "config_hash": config_hash,
        }

        async def work(tx: Tx) -> None:
            now = await tx.now()
            since = (
                to_iso(now - timedelta(seconds=waiting)) if waiting >= WAIT_SHOWN_AFTER else None
            )
            await tx.execute(_UPSERT, params | {"now": to_iso(now), "wait_since": since})

        await self._db.write_aside(work)

    async def leave(self) -> None:
        await self._db.write(
            lambda tx: tx.execute("DELETE FROM daemons WHERE id = :id", {"id": self.me.id})
        )


async def forget_silent(tx: Tx, before: str) -> int:
    """Drop rows of daemons silent since ``before`` (long dead: their jobs are back)."""
    return await tx.execute("DELETE FROM daemons WHERE heartbeat_at < :before", {"before": before})


async def list_daemons(db: Database, *, count_in_flight: bool = True) -> list[DaemonRow]:
    """Every daemon's row. Fetches in flight are counted from fetch_job: the heartbeat's
    count is up to 10 s old and misses most short fetches. Without ``count_in_flight``
    (fetch_job is locked) ``in_flight`` is None."""
    in_flight = (
        "(SELECT count(*) FROM fetch_job f WHERE f.status = 'ONGOING' AND f.claimed_by = d.id)"
        if count_in_flight
        else "NULL"
    )
    rows = await db.fetchall(
        "SELECT d.id, d.hostname, d.pid, d.started_at, d.heartbeat_at, d.config_hash, "
        f"d.database_wait_since, {in_flight} AS in_flight "
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
            row["database_wait_since"],
        )
        for row in rows
    ]
