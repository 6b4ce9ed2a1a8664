"""The versions of config.toml the cluster synced: their hashes and per-key digests, and
which one is current. The read side of ``rssd.repo.config_sync`` (the rules and the sync
are there): what ``rssd status`` needs, without the repositories a sync writes through.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import TYPE_CHECKING

from rssd.repo.db import Database, Tx

if TYPE_CHECKING:
    from rssd.models.config import Config

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


async def stored_in(tx: Tx) -> Synced | None:
    """The config_sync row (None: nothing synced yet)."""
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


async def synced_config(db: Database) -> Synced | None:
    return await db.read(stored_in)


async def known_digests(db: Database, hashes: set[str]) -> dict[str, dict[str, str]]:
    """The per-key digests of those of ``hashes`` the cluster has synced: what ``rssd
    status`` compares to say which keys a config differs in."""

    async def work(tx: Tx) -> dict[str, dict[str, str]]:
        found = {wanted: await version_digests(tx, wanted) for wanted in sorted(hashes)}
        return {key: digests for key, digests in found.items() if digests is not None}

    return await db.read(work)
