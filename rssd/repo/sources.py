"""SourceRepo: content_sources kept in step with config.toml."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from msgspec import Struct

from rssd.clock import to_iso
from rssd.models.dto import Source
from rssd.repo.db import Database, Tx
from rssd.repo.rows import SOURCE_COLUMNS as _COLUMNS
from rssd.repo.rows import source_from as _source
from rssd.repo.transitions import UNQUEUE_SOURCE

if TYPE_CHECKING:
    from rssd.models.config import Config, FeedConfig

#: A source's id, URL, name and feed title (``SourceRepo.names``).
Named = tuple[int, str, str | None, str | None]
#: What changes whenever a source is added, enabled or disabled (``SourceRepo.version``).
SourcesVersion = tuple[object, ...]

#: Every write of a source's URL or ``enabled`` (``sync_in``) sets ``updated_at`` to the
#: transaction's time; the sums tell apart two changes made within one millisecond.
_VERSION = (
    "SELECT count(*), max(id), max(updated_at), sum(enabled), "
    "sum(CASE WHEN enabled = 1 THEN id ELSE 0 END) FROM content_sources"
)


class SyncReport(Struct, frozen=True):
    """What a sync did, by URL: for the ``sources.synced`` log event."""

    added: tuple[str, ...]
    updated: tuple[str, ...]
    disabled: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.disabled)


class SourceRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def sync(self, config: Config) -> SyncReport:
        """Insert new feeds, update changed settings, disable removed feeds (posts kept),
        re-enable re-added ones; one transaction, so a reload is applied whole or not at all.
        """
        return await self._db.write(lambda tx: sync_in(tx, config))

    async def list(self, *, enabled_only: bool = False) -> list[Source]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM content_sources WHERE (:all = 1 OR enabled = 1) ORDER BY id",
            {"all": int(not enabled_only)},
        )
        return [_source(row) for row in rows]

    async def version(self) -> SourcesVersion:
        """A fingerprint of the set of sources and which are enabled: one aggregate row,
        so a cache of ``list(enabled_only=True)`` (the pipeline's ``FeedIndex``) knows
        when to read them again, whoever changed them."""
        row = await self._db.fetchone(_VERSION)
        return tuple(row) if row is not None else ()

    async def names(self) -> Sequence[Named]:
        """Every source's id, URL, name and feed title, by id: what a FEED argument may
        name, without building every source (``rssd posts --source NAME`` at 10,000
        feeds)."""
        rows = await self._db.fetchall(
            "SELECT id, url, name, feed_title FROM content_sources ORDER BY id"
        )
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    async def get(self, source_id: int) -> Source | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM content_sources WHERE id = :id", {"id": source_id}
        )
        return _source(row) if row else None

    async def get_by_url(self, url: str) -> Source | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM content_sources WHERE url = :url", {"url": url}
        )
        return _source(row) if row else None

    async def set_feed_title(self, source_id: int, title: str | None) -> bool:
        """Record the feed's own title; False when it was already that (nothing written).
        Not ``updated_at``: that marks config changes, which the scheduler reads."""
        return await self._db.write(lambda tx: set_feed_title_in(tx, source_id, title))

    async def set_feed_url(self, source_id: int, feed_url: str | None) -> bool:
        """Record the feed a homepage led to (None: the configured URL is the feed);
        False when it was already that."""
        rows = await self._db.write_one(
            "UPDATE content_sources SET feed_url = :feed_url "
            f"WHERE id = :id AND feed_url {self._db.dialect.is_distinct} :feed_url RETURNING id",
            {"id": source_id, "feed_url": feed_url},
        )
        return bool(rows)


async def set_feed_title_in(tx: Tx, source_id: int, title: str | None) -> bool:
    """``SourceRepo.set_feed_title`` inside the caller's transaction (the one that stores a
    fetch's posts and announces them: the webhook names the feed by the title just read)."""
    rows = await tx.fetchall(
        "UPDATE content_sources SET feed_title = :title "
        f"WHERE id = :id AND feed_title {tx.dialect.is_distinct} :title RETURNING id",
        {"id": source_id, "title": title},
    )
    return bool(rows)


#: The columns config.toml sets, in the order ``_settings`` gives their values.
_SETTINGS = (
    "name",
    "interval_minutes",
    "timeout_seconds",
    "enabled",
    "category",
    "interval_fixed",
    "min_interval_minutes",
    "max_interval_minutes",
)
_ENABLED = _SETTINGS.index("enabled")
#: The sync's statements, over ``_SETTINGS``.
_STORED = f"SELECT url, {', '.join(_SETTINGS)} FROM content_sources"
_INSERT = (
    f"INSERT INTO content_sources (url, {', '.join(_SETTINGS)}, created_at, updated_at) "
    f"VALUES (:url, {', '.join(f':{name}' for name in _SETTINGS)}, :now, :now)"
)
_UPDATE = (
    f"UPDATE content_sources SET {', '.join(f'{name} = :{name}' for name in _SETTINGS)}, "
    "updated_at = :now WHERE url = :url"
)


def _settings(config: Config, feed: FeedConfig) -> tuple[object, ...]:
    """The values of ``_SETTINGS`` config.toml gives ``feed``'s source."""
    low, high = config.feed_bounds(feed)
    return (
        feed.name,
        config.feed_interval(feed),
        float(config.feed_timeout(feed)),
        int(feed.enabled),
        feed.category,
        int(feed.interval_minutes is not None),
        float(low),
        float(high),
    )


async def sync_in(tx: Tx, config: Config) -> SyncReport:
    """``SourceRepo.sync`` inside the caller's transaction (rssd/repo/config_sync.py).

    Each stored source is compared with its feed as one tuple of the settings: at every
    start, with nothing changed, that is all the sync does for each of thousands of feeds."""
    wanted = {feed.url: _settings(config, feed) for feed in config.feeds}
    now = to_iso(await tx.now())
    rows = await tx.fetchall(_STORED)
    stored = {row[0]: tuple(row)[1:] for row in rows}
    added: list[str] = []
    updated: list[str] = []
    disabled: list[str] = []
    for url, settings in wanted.items():
        row = stored.get(url)
        if row == settings:
            continue
        params = {"url": url, "now": now, **dict(zip(_SETTINGS, settings, strict=True))}
        await tx.execute(_INSERT if row is None else _UPDATE, params)
        if row is None:
            added.append(url)
        else:
            updated.append(url)
    for url, row in stored.items():
        if url not in wanted and row[_ENABLED]:
            await tx.execute(
                "UPDATE content_sources SET enabled = 0, updated_at = :now WHERE url = :url",
                {"url": url, "now": now},
            )
            disabled.append(url)
    # A changed or disabled source's next fetch was planned under its old settings:
    # dropped, so that the scheduler plans it again (a QUEUED job has not started:
    # it is the schedule, not an attempt).
    for url in (*updated, *disabled):
        await tx.execute(UNQUEUE_SOURCE, {"url": url})
    return SyncReport(tuple(added), tuple(updated), tuple(disabled))
