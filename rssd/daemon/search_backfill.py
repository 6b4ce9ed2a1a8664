"""Building the search index of the posts stored before it (schema version 13), in the
background of ``rssd run``.

The migration only creates the empty index and records which posts predate it; indexing
half a million posts in the migration would hold the database (and the daemon's start)
for minutes. Here it is done a batch per transaction, between the daemon's own writes,
each batch moving a high-water mark stored in the database: a daemon stopped half-way
(or killed) resumes from the mark at its next start. On PostgreSQL one daemon at a time
does it (a named lock); the others look again later. Progress is logged
(``search.backfill_progress`` every ``PROGRESS_SECONDS``) and shown by ``rssd posts
--search`` while it lasts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from rssd.logs import get_logger
from rssd.repo.db import Database
from rssd.repo.search import BACKFILL_BATCH, Backfill, backfill_batch, backfill_state

log = get_logger("rssd.daemon")

LOCK = "rssd.search_backfill"
PROGRESS_SECONDS = 10.0
#: Between batches: the claim loop's and the fetches' writes go first.
PAUSE_SECONDS = 0.05
#: How long a daemon that found another one building the index waits to look again.
RETRY_SECONDS = 60.0


async def build_index(
    db: Database,
    *,
    batch: int = BACKFILL_BATCH,
    pause: float = PAUSE_SECONDS,
    progress: Callable[[Backfill], None] | None = None,
    progress_seconds: float = PROGRESS_SECONDS,
) -> Backfill:
    """Index every post from before the index, batch after batch; returns the final state.
    ``progress`` is called every ``progress_seconds`` and at the end."""
    state = await db.snapshot(backfill_state)
    if state.complete:
        return state
    log.info("search.backfill_started", posts=state.total - state.done, total=state.total)
    total = state.total
    started = last = time.monotonic()
    while not await db.write(lambda tx: backfill_batch(tx, batch)):
        if time.monotonic() - last >= progress_seconds:
            last = time.monotonic()
            state = await db.snapshot(backfill_state)
            log.info("search.backfill_progress", done=state.done, total=state.total)
            if progress is not None:
                progress(state)
        await asyncio.sleep(pause)
    state = await db.snapshot(backfill_state)
    if progress is not None:
        progress(state)
    log.info(
        "search.backfill_completed",
        total=total,
        duration_ms=round((time.monotonic() - started) * 1000),
    )
    return state


async def backfill_loop(db: Database) -> None:
    """The daemon's task: build the index once, by one daemon at a time; then end."""
    while True:
        if await db.try_lock(LOCK):
            try:
                await build_index(db)
                return
            finally:
                await db.unlock(LOCK)
        state = await db.snapshot(backfill_state)
        if state.complete:
            return
        await asyncio.sleep(RETRY_SECONDS)
