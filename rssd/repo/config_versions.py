"""The versions of config.toml the cluster synced: their hashes and per-key digests, and
which one is current. The read side of ``rssd.repo.config_sync`` (the rules and the sync
are there): what ``rssd status`` needs, without the repositories a sync writes through.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from msgspec import Struct

from rssd import __version__
from rssd.repo.db import Database, Tx

if TYPE_CHECKING:
    from rssd.models.config import Config

#: What config_sync records as the check that accepted the file synced: this rssd's
#: version (a release may check more, or differently: its first start checks again).
CHECKED_BY = __version__

#: Top-level settings each daemon may set for itself: never drift.
LOCAL_KEYS = frozenset(
    {"database", "metrics_file", "log_level", "max_concurrency", "shutdown_grace_seconds"}
)


def _digest(value: object) -> str:
    return hashlib.sha256(_CANONICAL.encode(value).encode()).hexdigest()[:16]


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


#: The canonical JSON every digest hashes, one encoder for all (a sync digests every feed:
#: ``json.dumps`` with options builds an encoder per call).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_opaque)


def _fingerprint(text: str) -> str:
    return hashlib.sha256(b"rssd-header-fingerprint:" + text.encode()).hexdigest()[:16]


def config_digests(config: Config) -> dict[str, str]:
    """One digest per key the cluster shares: each top-level setting by name, each feed
    as ``feeds[URL]``, each user as ``users[NAME]``. Two configs differ exactly in the
    keys whose digests differ (``differing_keys``)."""
    top = _values(config, _TOP_EXCLUDED)
    top["webhooks"] = _values(config.webhooks, frozenset())
    digests = {key: _digest(value) for key, value in top.items()}
    for feed in config.feeds:
        data = _values(feed, _FEED_EXCLUDED)
        data["headers"] = {name: _fingerprint(value) for name, value in feed.headers.items()}
        digests[f"feeds[{feed.url}]"] = _digest(data)
    for user in config.users:
        digests[f"users[{user.name}]"] = _digest(_values(user, _USER_EXCLUDED))
    return digests


_TOP_EXCLUDED = frozenset({*LOCAL_KEYS, "feeds", "users"})
_FEED_EXCLUDED = frozenset({"headers_file"})
_USER_EXCLUDED = frozenset({"secret_file"})
_NAMES: dict[tuple[type, frozenset[str]], tuple[str, ...]] = {}


def _values(table: object, exclude: frozenset[str]) -> dict[str, object]:
    """A config dataclass's fields by name, but ``exclude``: the form every digest has
    hashed since configs were pydantic models (a nested table is the caller's)."""
    key = (type(table), exclude)
    names = _NAMES.get(key)
    if names is None:
        found = fields(table)  # type: ignore[arg-type]
        names = _NAMES[key] = tuple(item.name for item in found if item.name not in exclude)
    return {name: getattr(table, name) for name in names}


def hash_of(digests: Mapping[str, str]) -> str:
    return _digest(dict(digests))


def config_hash(config: Config) -> str:
    """A stable hash of what the cluster shares of ``config`` (see the module's doc)."""
    return hash_of(config_digests(config))


def differing_keys(one: Mapping[str, str], other: Mapping[str, str]) -> list[str]:
    """The keys two configs' digests disagree on (one has it and the other not, or
    different values), in a stable order."""
    return sorted(key for key in one.keys() | other.keys() if one.get(key) != other.get(key))


class Synced(Struct, frozen=True):
    """What the config_sync row says."""

    config_hash: str
    config_mtime: str
    synced_at: str
    synced_by: str | None
    checked_by: str | None = None

    def checked_as_is(self, mtime: str | None) -> bool:
        """Whether config.toml, whose mtime is ``mtime`` now, is the very file a daemon of
        this rssd checked and synced (``checked_as_is``)."""
        return checked_as_is((self.config_mtime, self.checked_by), mtime)


def checked_as_is(stamp: tuple[str, str | None] | None, mtime: str | None) -> bool:
    """Whether config.toml, whose mtime is ``mtime`` now, is the very file a daemon of this
    rssd checked and synced (``stamp``: config_sync's mtime and checked_by): the one rule
    of every reader that spares itself the check (rssd/daemon/run.py, ``rssd status``, the
    commands' reader)."""
    return stamp is not None and mtime is not None and stamp == (mtime, CHECKED_BY)


#: The config_sync row, for the loop's readers (``stored_in``) and the start's own.
_SYNCED = (
    "SELECT config_hash, config_mtime, synced_at, synced_by, checked_by FROM config_sync "
    "WHERE id = 1"
)


async def stored_in(tx: Tx) -> Synced | None:
    """The config_sync row (None: nothing synced yet)."""
    row = await tx.fetchone(_SYNCED)
    if row is None:
        return None
    return Synced(
        row["config_hash"],
        row["config_mtime"],
        row["synced_at"],
        row["synced_by"],
        row["checked_by"],
    )


async def version_digests(tx: Tx, config_hash: str) -> dict[str, str] | None:
    """The per-key digests of a version the cluster synced (None: never synced)."""
    row = await tx.fetchone(
        "SELECT digests FROM config_versions WHERE config_hash = :hash", {"hash": config_hash}
    )
    if row is None:
        return None
    loaded = json.loads(row["digests"])
    return {str(key): str(value) for key, value in loaded.items()}


async def synced_config(db: Database) -> Synced | None:
    return await db.read(stored_in)


async def known_digests(db: Database, hashes: set[str]) -> dict[str, dict[str, str]]:
    """The per-key digests of those of ``hashes`` the cluster has synced: what ``rssd
    status`` compares to say which keys a config differs in."""

    async def work(tx: Tx) -> dict[str, dict[str, str]]:
        found = {wanted: await version_digests(tx, wanted) for wanted in sorted(hashes)}
        return {key: digests for key, digests in found.items() if digests is not None}

    return await db.read(work)


def synced_check_now(database: Path | str) -> tuple[str, str | None] | None:
    """The config file mtime config_sync records, and the rssd version whose check
    accepted that file (``CHECKED_BY``), read at once, before the daemon's event loop runs
    (run.py: a file synced as it is now, by its own version, starts without being checked
    again). None when there is no row, or it cannot be read: the file is then checked in
    full."""
    query = _SYNCED
    try:
        if isinstance(database, str):
            import psycopg  # noqa: PLC0415  (PostgreSQL only)

            from rssd.repo.postgres import ADAPTERS  # noqa: PLC0415  (its times as text)

            with psycopg.connect(
                database, connect_timeout=5, autocommit=True, context=ADAPTERS
            ) as conn:
                row = conn.execute(query).fetchone()
        else:
            import sqlite3  # noqa: PLC0415

            from rssd.repo.files import check_database_files  # noqa: PLC0415
            from rssd.repo.sqlite import readonly_uri  # noqa: PLC0415

            if not database.is_file():
                return None
            check_database_files(database)  # never open a FIFO: it would block
            local = sqlite3.connect(readonly_uri(database), uri=True)
            try:
                row = local.execute(query).fetchone()
            finally:
                local.close()
    except Exception:
        return None
    if row is None:
        return None
    return str(row[1]), None if row[4] is None else str(row[4])
