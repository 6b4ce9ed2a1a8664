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
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath
from typing import TYPE_CHECKING

from rssd.clock import now_iso
from rssd.repo.db import Database, Tx
from rssd.repo.sources import SyncReport, sync_in
from rssd.repo.users import UserSyncReport, sync_users_in

if TYPE_CHECKING:
    from rssd.models.config import Config

_LOCK = "rssd.config_sync"

#: Top-level settings each daemon may set for itself: never drift.
LOCAL_KEYS = frozenset(
    {"database", "metrics_file", "log_level", "max_concurrency", "shutdown_grace_seconds"}
)


def _digest(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_opaque)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _opaque(value: object) -> str:
    """Paths and filter rules as text; anything else (a secret) as its fingerprint."""
    if isinstance(value, PurePath):
        return str(value)
    text = getattr(value, "text", None)  # a keep/block rule: "field=regex"
    if isinstance(text, str):
        return text
    fingerprint = getattr(value, "fingerprint", None)
    if callable(fingerprint):
        return str(fingerprint())
    return type(value).__name__


def _fingerprint(text: str) -> str:
    return hashlib.sha256(b"rssd-header-fingerprint:" + text.encode()).hexdigest()[:16]


def config_digests(config: Config) -> dict[str, str]:
    """One digest per key the cluster shares: each top-level setting by name, each feed
    as ``feeds[URL]``, each user as ``users[NAME]``. Two configs differ exactly in the
    keys whose digests differ (``differing_keys``)."""
    top = config.model_dump(mode="python", exclude={*LOCAL_KEYS, "feeds", "users"}, warnings=False)
    digests = {key: _digest(value) for key, value in top.items()}
    for feed in config.feeds:
        data = feed.model_dump(mode="python", exclude={"headers_file"}, warnings=False)
        data["headers"] = {name: _fingerprint(value) for name, value in feed.headers.items()}
        digests[f"feeds[{feed.url}]"] = _digest(data)
    for user in config.users:
        data = user.model_dump(mode="python", exclude={"secret_file"}, warnings=False)
        digests[f"users[{user.name}]"] = _digest(data)
    return digests


def hash_of(digests: Mapping[str, str]) -> str:
    return _digest(dict(digests))


def config_hash(config: Config) -> str:
    """A stable hash of what the cluster shares of ``config`` (see the module's doc)."""
    return hash_of(config_digests(config))


def differing_keys(one: Mapping[str, str], other: Mapping[str, str]) -> list[str]:
    """The keys two configs' digests disagree on (one has it and the other not, or
    different values), in a stable order."""
    return sorted(key for key in one.keys() | other.keys() if one.get(key) != other.get(key))


@dataclass(frozen=True)
class Synced:
    """What the config_sync row says."""

    config_hash: str
    config_mtime: str
    synced_at: str
    synced_by: str | None


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


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    report: SyncReport | None  # None unless applied
    synced: Synced | None  # the row before this sync
    #: The keys this file differs in from the current version (drift only).
    differs_in: tuple[str, ...] = ()
    users: UserSyncReport | None = None  # None unless applied


async def _stored(tx: Tx) -> Synced | None:
    row = await tx.fetchone(
        "SELECT config_hash, config_mtime, synced_at, synced_by FROM config_sync WHERE id = 1"
    )
    if row is None:
        return None
    return Synced(row["config_hash"], row["config_mtime"], row["synced_at"], row["synced_by"])


async def version_digests(tx: Tx, config_hash: str) -> dict[str, str] | None:
    """The per-key digests of a version the cluster synced (None: never synced)."""
    row = await tx.fetchone(
        "SELECT digests FROM config_versions WHERE config_hash = :hash", {"hash": config_hash}
    )
    if row is None:
        return None
    loaded = json.loads(row["digests"])
    return {str(key): str(value) for key, value in loaded.items()}


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
    digests = config_digests(config)
    digest = hash_of(digests)

    async def work(tx: Tx) -> Outcome:
        if tx.dialect.xact_lock:  # daemons starting together sync one after the other
            await tx.execute(tx.dialect.xact_lock, {"lock_key": _LOCK})
        stored = await _stored(tx)
        if guard and stored is not None and stored.config_hash != digest:
            seen = await version_digests(tx, digest)
            verdict = judge(stored.config_hash, digest, superseded=seen is not None, edited=edited)
            if verdict is Verdict.DRIFT:
                current = await version_digests(tx, stored.config_hash) or {}
                return Outcome(Verdict.DRIFT, None, stored, tuple(differing_keys(digests, current)))
        report = await sync_in(tx, config)
        # The users too, under the same lock: daemons starting together on a fresh
        # database would otherwise insert the same users at once.
        users = await sync_users_in(tx, config)
        now = now_iso()
        await tx.execute(
            "INSERT INTO config_sync (id, config_hash, config_mtime, synced_at, synced_by) "
            "VALUES (1, :hash, :mtime, :now, :by) ON CONFLICT (id) DO UPDATE SET "
            "config_hash = excluded.config_hash, config_mtime = excluded.config_mtime, "
            "synced_at = excluded.synced_at, synced_by = excluded.synced_by",
            {"hash": digest, "mtime": file_mtime, "now": now, "by": daemon_id},
        )
        await tx.execute(
            "INSERT INTO config_versions (config_hash, digests, first_synced_at) "
            "VALUES (:hash, :digests, :now) ON CONFLICT (config_hash) DO NOTHING",
            {"hash": digest, "digests": json.dumps(digests, sort_keys=True), "now": now},
        )
        return Outcome(Verdict.APPLY, report, stored, users=users)

    return await db.write(work)


async def synced_config(db: Database) -> Synced | None:
    return await db.read(_stored)


async def known_digests(db: Database, hashes: set[str]) -> dict[str, dict[str, str]]:
    """The per-key digests of those of ``hashes`` the cluster has synced: what ``rssd
    status`` compares to say which keys a config differs in."""

    async def work(tx: Tx) -> dict[str, dict[str, str]]:
        found = {wanted: await version_digests(tx, wanted) for wanted in sorted(hashes)}
        return {key: digests for key, digests in found.items() if digests is not None}

    return await db.read(work)
