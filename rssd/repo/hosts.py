"""HostRepo: per-host politeness that every daemon of a database keeps together.

Each host (``rssd.net.hosts.host_key``) has one row in ``hosts``: when the next request to
it may start (``next_start_at``, host_min_gap_seconds after the last start) and until when
it is paused (``paused_until``, a 429 or 503 with Retry-After from any of its feeds). A
request takes its turn with one upsert that succeeds only when both are past, so two
daemons can never start requests to one host closer than the gap: the row is the lock.
On PostgreSQL both times are written and judged by the database's clock (``now()``).
The per-host slots (``max_per_host``) stay on the ONGOING jobs (rssd/repo/claims.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from rssd.clock import parse_iso, to_iso, utcnow
from rssd.repo.db import Database, Tx


class HostRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _times(self, now: datetime, **seconds: float) -> dict[str, object]:
        """Each named delay as seconds (PostgreSQL's ``now() + ...``) and as a time after
        ``now`` (SQLite's, the daemon's clock), for ``dialect.after``."""
        params: dict[str, object] = {"now": to_iso(now)}
        for name, value in seconds.items():
            params[name] = value
            params[f"{name}_at"] = to_iso(now + timedelta(seconds=value))
        return params

    async def take_turn(self, host: str, gap_seconds: float) -> float:
        """Start a request to ``host`` now if its gap and pause are over (0.0: go, the
        next start is ``gap_seconds`` away); else how many seconds to wait first."""
        dialect = self._db.dialect
        clock, after = dialect.clock, dialect.after("gap")
        params = {"host": host} | self._times(utcnow(), gap=gap_seconds)

        async def work(tx: Tx) -> float:
            taken = await tx.fetchone(
                f"INSERT INTO hosts (host, next_start_at) VALUES (:host, {after}) "
                f"ON CONFLICT (host) DO UPDATE SET next_start_at = {after} "
                f"WHERE hosts.next_start_at <= {clock} "
                f"AND (hosts.paused_until IS NULL OR hosts.paused_until <= {clock}) "
                f"RETURNING host",
                params,
            )
            if taken is not None:
                return 0.0
            row = await tx.fetchone(
                f"SELECT next_start_at, paused_until, {clock} AS now FROM hosts WHERE host = :host",
                params,
            )
            if row is None:  # deleted meanwhile: the next try inserts it
                return 0.0
            until = max(str(row["next_start_at"]), str(row["paused_until"] or ""))
            wait = (parse_iso(until) - parse_iso(str(row["now"]))).total_seconds()
            return max(wait, 0.001)

        return await self._db.write(work)

    async def pause(self, host: str, seconds: float) -> None:
        """No request to ``host`` starts for ``seconds`` (a longer pause already set
        stands)."""
        dialect = self._db.dialect
        clock, until = dialect.clock, dialect.after("pause")
        await self._db.write_one(
            f"INSERT INTO hosts (host, next_start_at, paused_until) "
            f"VALUES (:host, {clock}, {until}) "
            f"ON CONFLICT (host) DO UPDATE SET paused_until = {until} "
            f"WHERE hosts.paused_until IS NULL OR hosts.paused_until < {until}",
            {"host": host} | self._times(utcnow(), pause=seconds),
        )

    async def paused(self) -> dict[str, str]:
        """Hosts paused now, with the end of each pause."""
        clock = self._db.dialect.clock
        rows = await self._db.fetchall(
            f"SELECT host, paused_until FROM hosts WHERE paused_until > {clock}",
            {"now": to_iso(utcnow())},
        )
        return {str(row["host"]): str(row["paused_until"]) for row in rows}

    async def forget_idle(self, before: str) -> int:
        """Delete the rows of hosts whose gap and pause both ended before ``before``: such
        a row restrains nothing (a host without a row may start at once, as one whose
        times are past), and hosts whose feeds are gone would otherwise stay for good."""
        return await self._db.write(
            lambda tx: tx.execute(
                "DELETE FROM hosts WHERE next_start_at < :before "
                "AND (paused_until IS NULL OR paused_until < :before)",
                {"before": before},
            )
        )
