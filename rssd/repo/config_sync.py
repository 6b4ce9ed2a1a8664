"""The cluster's config: the version of config.toml last synced into the database.

Daemons on several machines each read their own copy of config.toml. Syncing whatever each
one has would flap feeds on and off while the copies differ (a deploy rolling out), and a
file's modification time is no version (``touch`` or a copy with ``cp -p`` changes it at
will). So the database keeps every version it has synced (``config_versions``, by hash)
and which one is current (``config_sync``), and a daemon applies its file when:

- it is the current version (nothing to do), or content the cluster has never seen (an
  edit, wherever it was made), or
- (at a reload) its content changed since this daemon last read it: an edit made on this
  machine, also one that goes back to an earlier version.

A file holding a version the cluster has moved on from, read at start or unchanged since
the daemon last read it, is *drift*: logged (``config.drift``, with the keys that differ)
and not applied; that daemon keeps fetching the feeds the database lists.

The hash covers what the daemons of one database must agree on, key by key: the feeds and
the users with their settings, the webhook settings, the defaults the feeds inherit. Not
the settings each daemon may have of its own (``LOCAL_KEYS``: its database URL or path,
metrics file, log level, concurrency, shutdown grace), nor where a secret is read from
(``secret_file``, ``headers_file``); not the comments or the layout of the file. So
byte-identical files in two folders, or two daemons of one host with their own metrics
files, agree. Secrets and header values count by a one-way fingerprint only: no secret
goes into a hash that ``rssd status`` shows.

The hash and the reads ``rssd status`` needs are in ``rssd.repo.config_versions``: a
reader imports neither the sync nor the repositories it writes through.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING

from msgspec import Struct

from rssd.clock import to_iso
from rssd.repo.config_versions import (
    CHECKED_BY,
    Synced,
    config_digests,
    differing_keys,
    hash_of,
    stored_in,
    version_digests,
)
from rssd.repo.db import Database, Tx
from rssd.repo.sources import SyncReport, sync_in

if TYPE_CHECKING:
    from rssd.models.config import Config
    from rssd.repo.users import UserSyncReport

_LOCK = "rssd.config_sync"


class Verdict(StrEnum):
    APPLY = "apply"  # the current version, new content, or an edit on this machine
    DRIFT = "drift"  # a version the cluster has moved on from: not applied


def judge(current: str | None, file_hash: str, *, superseded: bool, edited: bool) -> Verdict:
    """Whether a daemon applies its config.toml (the rules in the module's doc).

    ``current``: the synced version's hash (None: none yet); ``superseded``: ``file_hash``
    was synced once and replaced since; ``edited``: the file's content changed since this
    daemon last read it (False at start)."""
    if current is None or file_hash == current or edited or not superseded:
        return Verdict.APPLY
    return Verdict.DRIFT


class Outcome(Struct, frozen=True):
    verdict: Verdict
    report: SyncReport | None  # None unless applied
    synced: Synced | None  # the row before this sync
    #: The keys this file differs in from the current version (drift only).
    differs_in: tuple[str, ...] = ()
    users: UserSyncReport | None = None  # None unless applied
    #: The file's own hash (``config_hash``), computed once for the sync and its logs.
    config_hash: str = ""


async def sync_config(
    db: Database,
    config: Config,
    *,
    file_mtime: str,
    daemon_id: str | None,
    guard: bool,
    edited: bool = False,
) -> Outcome:
    """Sync ``config`` unless (``guard``) it is drift (``judge``); one transaction.

    ``guard`` is off where one daemon owns the database (SQLite): its file is the truth.
    ``edited``: the file's content changed since this daemon last read it.
    """
    # Here, not at the top: ``rssd status`` reads this module and imports no write path.
    from rssd.repo import users as users_sync  # noqa: PLC0415

    digests = config_digests(config)
    digest = hash_of(digests)

    async def work(tx: Tx) -> Outcome:
        if tx.dialect.xact_lock:  # daemons starting together sync one after the other
            await tx.execute(tx.dialect.xact_lock, {"lock_key": _LOCK})
        stored = await stored_in(tx)
        if guard and stored is not None and stored.config_hash != digest:
            seen = await version_digests(tx, digest)
            verdict = judge(stored.config_hash, digest, superseded=seen is not None, edited=edited)
            if verdict is Verdict.DRIFT:
                current = await version_digests(tx, stored.config_hash) or {}
                differs = tuple(differing_keys(digests, current))
                return Outcome(Verdict.DRIFT, None, stored, differs, config_hash=digest)
        report = await sync_in(tx, config)
        # The users too, under the same lock: daemons starting together on a fresh
        # database would otherwise insert the same users at once.
        users = await users_sync.sync_users_in(tx, config)
        now = to_iso(await tx.now())  # the database's clock, as every daemon reads it
        await tx.execute(
            "INSERT INTO config_sync (id, config_hash, config_mtime, synced_at, synced_by, "
            "checked_by) VALUES (1, :hash, :mtime, :now, :by, :checker) "
            "ON CONFLICT (id) DO UPDATE SET "
            "config_hash = excluded.config_hash, config_mtime = excluded.config_mtime, "
            "synced_at = excluded.synced_at, synced_by = excluded.synced_by, "
            "checked_by = excluded.checked_by",
            {
                "hash": digest,
                "mtime": file_mtime,
                "now": now,
                "by": daemon_id,
                "checker": CHECKED_BY,
            },
        )
        await tx.execute(
            "INSERT INTO config_versions (config_hash, digests, first_synced_at) "
            "VALUES (:hash, :digests, :now) ON CONFLICT (config_hash) DO NOTHING",
            {"hash": digest, "digests": json.dumps(digests, sort_keys=True), "now": now},
        )
        return Outcome(Verdict.APPLY, report, stored, users=users, config_hash=digest)

    return await db.write(work)
