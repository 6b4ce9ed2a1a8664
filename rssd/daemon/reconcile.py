"""Give every enabled source its next QUEUED job, where it has none.

A source has none when it is new, re-enabled or changed in config.toml (sync drops the
planned job), when its feed answered 410 Gone and its config entry changed since, or when
a database from before the schedule lived in it is first opened. Its due time comes from
its latest finished job by the same rules as everywhere (``next_due`` over ``history_of``).
Run at start-up, after each config reload and every minute by every daemon: the insert
skips any source that got an active job meanwhile, so running it twice is harmless.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from rssd.clock import to_iso
from rssd.daemon.history import history_of
from rssd.daemon.schedule import Activity, Policy, next_due, policy_of
from rssd.logs import get_logger
from rssd.models.dto import Source
from rssd.repo.claims import ANALYZE_AFTER, ClaimRepo
from rssd.repo.db import Database
from rssd.repo.jobs import latest_jobs
from rssd.repo.sources import SourceRepo

log = get_logger("rssd.daemon")


async def reconcile(
    db: Database,
    claims: ClaimRepo,
    rng: random.Random,
    *,
    log_gone: bool = False,
    policy: Callable[[Source, Activity | None], Policy] | None = None,
) -> int:
    """Queue the missing jobs; returns how many were queued. ``policy``: a source's
    scheduling policy (default: ``policy_of``, at its start interval: a source queued here
    has just been added or changed, and its first fetch plans by its posting rate)."""
    sources = {s.id: s for s in await SourceRepo(db).list(enabled_only=True)}
    now = await db.now()  # due times every daemon acts on: the database's clock
    due: dict[int, str] = {}
    for row in await latest_jobs(db):
        source = sources.get(row.source_id)
        if source is None or row.active:
            continue
        rules = (policy or policy_of)(source, None)
        when = next_due(history_of(row), rules, now, rng.random())
        if when is None:
            if log_gone:
                log.warning(
                    "source.gone",
                    source_id=source.id,
                    url=source.url,
                    detail="410 Gone: not fetched again until its config entry changes",
                )
            continue
        due[source.id] = to_iso(when)
    queued = await claims.queue_missing(due)
    if queued >= ANALYZE_AFTER:
        try:  # the jobs are queued whatever happens here: statistics are a help
            await claims.refresh_statistics()
        except Exception as exc:
            log.warning("claims.analyze_failed", queued=queued, error_message=repr(exc))
    return queued
