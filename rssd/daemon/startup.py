"""What every daemon start and stop does around fetching: the lock, crash recovery, the
feed-list sync, and a clean close (WAL checkpoint) that the next start can trust."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from rssd.daemon.lock import DaemonLock
from rssd.logs import get_logger
from rssd.models.config import Config
from rssd.repo.db import Database
from rssd.repo.files import check_database_files
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.sources import SourceRepo, SyncReport
from rssd.repo.users import UserRepo

log = get_logger("rssd.daemon")


async def recover(db: Database) -> int:
    """Jobs left QUEUED/ONGOING by a crash or kill -9 become FAILED ``interrupted``.

    Safe only while holding the daemon lock: no other daemon can own those jobs.
    """
    count = await FetchJobRepo(db).fail_active("the daemon stopped before this job finished")
    if count:
        log.warning("jobs.recovered", jobs=count, error_code="interrupted")
    return count


async def sync_sources(db: Database, config: Config) -> SyncReport:
    """Feeds, then the users subscribed to them (subscriptions name feeds by id)."""
    report = await SourceRepo(db).sync(config)
    log.info(
        "sources.synced",
        added=len(report.added),
        updated=len(report.updated),
        disabled=len(report.disabled),
        feeds=len(config.feeds),
    )
    users = await UserRepo(db).sync(config)
    if users.added or users.updated or users.disabled or users.subscribed or users.unsubscribed:
        log.info(
            "users.synced",
            added=len(users.added),
            updated=len(users.updated),
            disabled=len(users.disabled),
            subscribed=users.subscribed,
            unsubscribed=users.unsubscribed,
            users=len(config.users),
        )
    for name in users.reenabled:
        log.info("endpoint.enabled", user=name, reason="config_changed")
    return report


@asynccontextmanager
async def daemon_session(config: Config) -> AsyncIterator[Database]:
    """Lock the database, check it after an unclean stop, recover jobs, sync sources.

    On a normal exit the WAL is checkpointed and the lock file records a clean stop.
    """
    check_database_files(config.database)  # before the lock file is created beside it
    with DaemonLock(config.database) as lock:
        db = await Database.open(config.database)
        try:
            if lock.previous_state not in ("", "clean"):
                result = await db.quick_check()
                (log.info if result == "ok" else log.error)(
                    "database.checked", check="quick_check", result=result
                )
            await recover(db)
            await sync_sources(db, config)
            yield db
            await db.checkpoint()
        finally:
            await db.close()
        lock.mark_clean()
