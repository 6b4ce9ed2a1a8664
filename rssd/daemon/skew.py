"""How far this machine's clock is from the database's, and the warning when too far.

On a shared database (PostgreSQL) nothing other daemons act on is timed by the local
clock (``Database.now``), so a wrong clock can no longer prune, schedule or disable for
the cluster. It still shows in this daemon's own logs and its requests' signatures
(``webhook-timestamp``), so it is measured at start and every minute, and reported.
"""

from __future__ import annotations

from datetime import datetime

from rssd import metrics
from rssd.clock import to_iso, utcnow
from rssd.logs import get_logger
from rssd.repo.db import Database

log = get_logger("rssd.daemon")

#: A difference beyond this is logged (``clock.skew``).
SKEW_BOUND_SECONDS = 30.0


def skew_seconds(local_before: datetime, database: datetime, local_after: datetime) -> float:
    """The database's clock minus ours (positive: ours is behind), read against the
    middle of the round trip that fetched it."""
    middle = local_before + (local_after - local_before) / 2
    return (database - middle).total_seconds()


async def check_skew(db: Database) -> float:
    """Measure, record in the metrics, log ``clock.skew`` beyond the bound; the skew."""
    before = utcnow()
    database = await db.now()
    after = utcnow()
    skew = skew_seconds(before, database, after)
    metrics.CLOCK_SKEW.set(skew)
    if abs(skew) > SKEW_BOUND_SECONDS:
        log.warning(
            "clock.skew",
            skew_seconds=round(skew, 1),
            local_time=to_iso(after),
            database_time=to_iso(database),
            bound_seconds=SKEW_BOUND_SECONDS,
            detail="this machine's clock differs from the database's; due times, retries "
            "and retention follow the database's clock, but fix the clock (NTP)",
        )
    return skew
