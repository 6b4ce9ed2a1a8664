"""What every daemon start and stop does around fetching: the lock, crash recovery, the
feed-list sync, and a clean close (WAL checkpoint) that the next start can trust."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from rssd.clock import now_iso
from rssd.daemon.lock import DaemonLock
from rssd.logs import get_logger
from rssd.models.config import Config, exposed_files
from rssd.models.location import config_mtime
from rssd.repo.claims import ClaimRepo
from rssd.repo.config_sync import sync_config
from rssd.repo.db import Database
from rssd.repo.files import check_database_files
from rssd.repo.open import open_database
from rssd.repo.outbox import OutboxRepo
from rssd.repo.sources import SyncReport

log = get_logger("rssd.daemon")


def warn_exposed_files(config: Config, path: Path) -> None:
    """One ``config.file_exposed`` warning per secret file others may read (at start and
    at every reload: a chmod since is noticed)."""
    for exposed in exposed_files(config, path):
        log.warning(
            "config.file_exposed",
            key=exposed.key,
            path=str(exposed.path),
            target=str(exposed.target),
            mode=f"{exposed.mode:04o}",
            detail="readable by every user of this machine; make it readable by rssd only",
        )


async def recover(db: Database) -> int:
    """Jobs left ONGOING by a crash or kill -9 become FAILED ``interrupted``, their
    sources due again at once (QUEUED jobs are the schedule: they stay).

    Safe only while holding the daemon lock: no other daemon can own those jobs. (On
    PostgreSQL the others' jobs are live; a dead daemon's come back as their leases expire.)
    """
    count = len(await ClaimRepo(db, "").take_back(everything=True))
    if count:
        log.warning("jobs.recovered", jobs=count, error_code="interrupted")
    # Likewise the users' sending leases the dead daemon held: nobody else can hold one.
    await OutboxRepo(db).end_all_turns()
    return count


def file_mtime(path: Path | None, mtime: str | None = None) -> str:
    """When the config file was last written: ``mtime`` if it was taken before the file
    was read (run.py), else asked now (now itself, if there is no file to ask)."""
    return mtime or (config_mtime(path) if path else None) or now_iso()


async def sync_sources(
    db: Database,
    config: Config,
    path: Path | None = None,
    daemon_id: str | None = None,
    *,
    edited: bool = False,
    mtime: str | None = None,
) -> SyncReport:
    """Sync the feed list from ``config`` (read from ``path``). On a shared database a
    file holding a version the cluster has moved on from is drift: logged, not applied
    (config_sync.py). ``edited``: its content changed since this daemon last read it.
    ``mtime``: the file's, taken before it was read (else it is asked now). Feeds first,
    then the users subscribed to them."""
    outcome = await sync_config(
        db,
        config,
        file_mtime=file_mtime(path, mtime),
        daemon_id=daemon_id,
        guard=db.shared,
        edited=edited,
    )
    if outcome.report is None:
        synced = outcome.synced
        assert synced is not None
        log.warning(
            "config.drift",
            config_hash=outcome.config_hash,
            synced_hash=synced.config_hash,
            synced_at=synced.synced_at,
            synced_by=synced.synced_by,
            differs_in=list(outcome.differs_in),
            detail="this config.toml holds an earlier version than the one the cluster "
            "runs (synced by another daemon), unchanged since this daemon read it: not "
            "applied; copy the current file to this machine, or edit this one",
        )
        return SyncReport((), (), ())
    report = outcome.report
    log.info(
        "sources.synced",
        added=len(report.added),
        updated=len(report.updated),
        disabled=len(report.disabled),
        feeds=len(config.feeds),
        config_hash=outcome.config_hash,
    )
    # The users subscribed to the feeds, synced in the same transaction.
    users = outcome.users
    assert users is not None
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
async def daemon_session(
    config: Config,
    path: Path | None = None,
    daemon_id: str | None = None,
    *,
    mtime: str | None = None,
) -> AsyncIterator[Database]:
    """Lock the database, check it after an unclean stop, recover jobs, sync sources.

    On a normal exit the WAL is checkpointed and the lock file records a clean stop.
    On PostgreSQL there is no lock file: any number of daemons share the database.
    """
    db_path = config.database_path
    if db_path is None:
        async with _shared_session(config, path, daemon_id, mtime) as shared:
            yield shared
        return
    check_database_files(db_path)  # before the lock file is created beside it
    with DaemonLock(db_path) as lock:
        db = await open_database(db_path)
        try:
            if lock.previous_state not in ("", "clean"):
                result = await db.quick_check()
                (log.info if result == "ok" else log.error)(
                    "database.checked", check="quick_check", result=result
                )
            await recover(db)
            await sync_sources(db, config, path, daemon_id, mtime=mtime)
            yield db
            await db.checkpoint()
        finally:
            await db.close()
        lock.mark_clean()


@asynccontextmanager
async def _shared_session(
    config: Config, path: Path | None, daemon_id: str | None, mtime: str | None
) -> AsyncIterator[Database]:
    """PostgreSQL: no lock and no start-up recovery (other daemons' jobs are live; a dead
    one's come back when their leases expire), only the sync."""
    db = await open_database(config.database)
    try:
        await sync_sources(db, config, path, daemon_id, mtime=mtime)
        yield db
    finally:
        await db.close()
