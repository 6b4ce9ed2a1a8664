"""The config.toml last synced into content_sources, so several daemons agree on one.

Daemons on several machines each read their own copy of config.toml. Syncing whatever each
one has would flap feeds on and off while the copies differ (a deploy rolling out). So the
database keeps the synced config's hash and its file's modification time: a daemon applies
its file only when it is the same or newer; an older one is *drift*, logged, and left
unapplied. The hash covers the settings, not the comments or the layout of the file, and
not ``database`` (a path or URL that may differ per machine).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath
from typing import TYPE_CHECKING

from rssd.clock import now_iso
from rssd.repo.db import Database, Tx
from rssd.repo.sources import SyncReport, sync_in

if TYPE_CHECKING:
    from rssd.models.config import Config

_LOCK = "rssd.config_sync"


def config_hash(config: Config) -> str:
    """A stable hash of what the config says (sha256 of its canonical JSON, shortened).
    Values JSON has no form for (a webhook secret) count by their type only: no secret
    goes into a hash that ``rssd status`` shows."""
    data = config.model_dump(mode="python", exclude={"database"}, warnings=False)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=_opaque)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _opaque(value: object) -> str:
    """Paths as text; anything else (a secret) as its type's name."""
    return str(value) if isinstance(value, PurePath) else type(value).__name__


@dataclass(frozen=True)
class Synced:
    """What the config_sync row says."""

    config_hash: str
    config_mtime: str
    synced_at: str
    synced_by: str | None


class Verdict(StrEnum):
    APPLY = "apply"  # new, the same, or newer than the synced one
    DRIFT = "drift"  # older than the synced one: not applied


def judge(stored: Synced | None, file_hash: str, file_mtime: str) -> Verdict:
    """Apply a config that is the synced one or newer; an older different one is drift."""
    if stored is None or stored.config_hash == file_hash or file_mtime >= stored.config_mtime:
        return Verdict.APPLY
    return Verdict.DRIFT


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    report: SyncReport | None  # None unless applied
    synced: Synced | None  # the row before this sync


async def _stored(tx: Tx) -> Synced | None:
    row = await tx.fetchone(
        "SELECT config_hash, config_mtime, synced_at, synced_by FROM config_sync WHERE id = 1"
    )
    if row is None:
        return None
    return Synced(row["config_hash"], row["config_mtime"], row["synced_at"], row["synced_by"])


async def sync_config(
    db: Database, config: Config, *, file_mtime: str, daemon_id: str | None, guard: bool
) -> Outcome:
    """Sync ``config`` unless (``guard``) it is older than the synced one; one transaction.

    ``guard`` is off where one daemon owns the database (SQLite): its file is the truth.
    """
    digest = config_hash(config)

    async def work(tx: Tx) -> Outcome:
        if tx.dialect.xact_lock:  # daemons starting together sync one after the other
            await tx.execute(tx.dialect.xact_lock, {"lock_key": _LOCK})
        stored = await _stored(tx)
        if guard and judge(stored, digest, file_mtime) is Verdict.DRIFT:
            return Outcome(Verdict.DRIFT, None, stored)
        report = await sync_in(tx, config)
        await tx.execute(
            "INSERT INTO config_sync (id, config_hash, config_mtime, synced_at, synced_by) "
            "VALUES (1, :hash, :mtime, :now, :by) ON CONFLICT (id) DO UPDATE SET "
            "config_hash = excluded.config_hash, config_mtime = excluded.config_mtime, "
            "synced_at = excluded.synced_at, synced_by = excluded.synced_by",
            {"hash": digest, "mtime": file_mtime, "now": now_iso(), "by": daemon_id},
        )
        return Outcome(Verdict.APPLY, report, stored)

    return await db.write(work)


async def synced_config(db: Database) -> Synced | None:
    return await db.read(_stored)
