"""The digest loop: closes users' digest periods (rssd/repo/digests.py) as they end and
wakes the delivery loop for the messages written.

It looks every ``POLL_SECONDS`` rather than sleeping until the next close: a period's end
depends only on the clock, a missed look costs at most that long, and after a restart or
a kill -9 the first look (at once) writes every digest whose period ended meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rssd.clock import to_iso
from rssd.logs import get_logger
from rssd.repo.db import Database
from rssd.repo.digests import close_due

log = get_logger("rssd.webhooks")

POLL_SECONDS = 15.0


async def close_digests(db: Database) -> int:
    """Write every digest due now; log and return how many messages."""
    # The database's clock: a digest's period closes for every daemon at once.
    now = await db.now()
    written = await close_due(db, now, to_iso(now))
    if written:
        log.info("digests.written", messages=written)
    return written


async def digest_loop(db: Database, poke: Callable[[], None]) -> None:
    """Until cancelled."""
    while True:
        try:
            if await close_digests(db):
                poke()
        except Exception as exc:  # the database refused: try again at the next look
            log.error("digests.failed", error_message=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(POLL_SECONDS)
