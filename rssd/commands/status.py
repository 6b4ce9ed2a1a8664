"""``rssd status``: every source's state, read from the database on a read-only connection.

The state of a source is derived from its fetch jobs only (the single source of truth). Its
next due time is its QUEUED job's ``not_before`` (the schedule, in the database); a source
without one yet is estimated with the daemon's own rules (``next_due`` over ``history_of``)
with the jitter at its midpoint.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from msgspec import Struct

from rssd.clock import parse_iso, utcnow
from rssd.commands.context import reader_at, run
from rssd.commands.errors import CommandError
from rssd.commands.overview import Assessment, Overview
from rssd.commands.status_view import render_human, render_json
from rssd.commands.terminal import safe_text
from rssd.daemon.history import history_of
from rssd.daemon.schedule import Reason, next_due, policy_of
from rssd.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from rssd.models.categories import in_category
from rssd.models.dto import FetchJobStatus, LatestJob
from rssd.models.location import ConfigError, config_mtime, fallback_database
from rssd.models.source_state import classify
from rssd.models.urls import normalize_url
from rssd.net.hosts import host_key
from rssd.repo.config_versions import (
    Synced,
    config_digests,
    differing_keys,
    hash_of,
    known_digests,
    synced_config,
)
from rssd.repo.daemons import DaemonRow, list_daemons
from rssd.repo.db import Database, is_lock_timeout
from rssd.repo.hosts import HostRepo
from rssd.repo.queries import SourceStatus, source_statuses

if TYPE_CHECKING:
    from rssd.models.config import Config

T = TypeVar("T")

#: The midpoint of the daemon's +-10% jitter.
JITTER = 0.5


def assess(row: SourceStatus, now: datetime, paused: frozenset[str] = frozenset()) -> Assessment:
    """State, next due and interval of one source, by the same rules the daemon schedules
    with. ``paused``: the hosts a 429/503 Retry-After paused."""
    source = row.source
    history = history_of(_latest(row))
    active = row.active
    fetching = active is not None and active.status is FetchJobStatus.ONGOING
    state = classify(
        enabled=source.enabled,
        gone=history.gone,
        failures=row.failures,
        succeeded=row.last_success is not None,
    )
    due: datetime | None = None
    if source.enabled:
        if fetching:
            due = now
        elif active is not None and active.status is FetchJobStatus.QUEUED and active.not_before:
            due = parse_iso(active.not_before)
        else:
            due = next_due(history, policy_of(source), now, JITTER)
    interval, reason = _interval(row)
    if source.enabled and host_key(source.feed_url or source.url) in paused:
        reason = Reason.HOST_PAUSED.value
    return Assessment(row, state, fetching, due, interval, reason)


def _interval(row: SourceStatus) -> tuple[timedelta | None, str | None]:
    """The interval the active job was planned with, and why; a job queued without a plan
    (a new or changed feed) has its policy's."""
    if not row.source.enabled:
        return None, None
    job = row.active
    if job is not None and job.interval_seconds is not None and job.interval_reason:
        return timedelta(seconds=job.interval_seconds), job.interval_reason
    policy = policy_of(row.source)
    return policy.interval, policy.reason.value


def _latest(row: SourceStatus) -> LatestJob:
    """The scheduler's input, from the newest *finished* job: a job running right now has
    no outcome yet, and the daemon schedules from the one before it too."""
    job = row.finished
    return LatestJob(
        source_id=row.source.id,
        source_updated_at=row.source.updated_at,
        job_id=job.id if job else None,
        status=job.status if job else None,
        ended_at=job.ended_at if job else None,
        error_code=job.error_code if job else None,
        http_status=job.http_status if job else None,
        failures=row.failures,
        last_success_at=row.last_success.ended_at if row.last_success else None,
    )


#: How long a read of ``status`` waits for a lock (PostgreSQL: a table locked by hand or
#: by a migration) before it gives that part up and says so: status answers meanwhile.
LOCK_WAIT_SECONDS = 2.0


class _View(Struct, frozen=True):
    """What the database says, read in one go."""

    rows: list[SourceStatus]
    daemons: list[DaemonRow]
    synced: Synced | None
    shared: bool
    versions: dict[str, dict[str, str]]  # the synced version's and the daemons' digests
    paused: frozenset[str] = frozenset()  # hosts paused by a 429/503 Retry-After
    unread: tuple[str, ...] = ()  # the parts a lock kept from being read


async def _part(unread: list[str], name: str, read: Awaitable[T], empty: T) -> T:
    """``read``, or ``empty`` with ``name`` noted in ``unread`` if a lock kept it out."""
    try:
        return await read
    except Exception as exc:
        if not is_lock_timeout(exc):
            raise
        unread.append(name)
        return empty


async def _daemons(db: Database, unread: list[str]) -> list[DaemonRow]:
    """The daemons; their fetches in flight only if fetch_job can be read."""
    try:
        return await list_daemons(db)
    except Exception as exc:
        if not is_lock_timeout(exc):
            raise
    return await _part(unread, "daemons", list_daemons(db, count_in_flight=False), [])


async def _view_of(database: Path | str) -> _View:
    async with reader_at(database, LOCK_WAIT_SECONDS) as db:
        unread: list[str] = []
        daemons = await _daemons(db, unread)
        synced = await _part(unread, "config", synced_config(db), None)
        hashes = {d.config_hash for d in daemons if d.config_hash is not None}
        if synced is not None:
            hashes.add(synced.config_hash)
        versions = await _part(unread, "config", known_digests(db, hashes), {})
        rows = await _part(unread, "sources", source_statuses(db), [])
        paused = await _part(unread, "hosts", HostRepo(db).paused(), {})
        return _View(
            rows,
            daemons,
            synced,
            db.shared,
            versions,
            frozenset(paused),
            tuple(dict.fromkeys(unread)),
        )


async def gather(path: Path) -> Overview:
    """The database's view; a broken config.toml does not hide it (an operator looks at
    status exactly then): its errors come with it, and the database is the one the file
    names if that much can be read.

    A config.toml a daemon of this rssd has validated and synced as it is now (the mtime
    and version config_sync records: ``Synced.checked_as_is``) is not validated again: its
    database lists every feed it names, and its hash is the synced one. That spares
    pydantic's import and the models (a large share of ``status``; bench/cli_speed.py);
    any other file is validated in full. The database the file names is read once,
    whichever way it goes."""
    database = fallback_database(path)
    try:
        view: _View | None = await _view_of(database)
    except CommandError:
        view = None  # said below, with the config's errors if it has any
    mtime = config_mtime(path)
    if view is not None and view.synced is not None and view.synced.checked_as_is(mtime):
        return _overview(view, [], (), view.synced.config_hash)
    try:
        config: Config | None = _load_config(path)
    except ConfigError as exc:
        config, errors = None, tuple(f"{path}: {line}" for line in exc.errors)
    else:
        errors = ()
    if config is not None and config.database != database:
        database, view = config.database, None
    if view is None:
        try:
            view = await _view_of(database)
        except CommandError as exc:
            if errors:
                raise CommandError("\n".join([*errors, str(exc)])) from None
            raise
    digests = config_digests(config) if config else None
    current = view.versions.get(view.synced.config_hash) if view.synced else None
    return _overview(
        view,
        not_in_database([feed.url for feed in config.feeds], view.rows) if config else [],
        errors,
        hash_of(digests) if digests is not None else None,
        tuple(differing_keys(digests, current)) if digests and current is not None else (),
    )


def _overview(
    view: _View,
    missing: list[str],
    errors: tuple[str, ...],
    this_hash: str | None,
    differs_in: tuple[str, ...] = (),
) -> Overview:
    now = utcnow()
    return Overview(
        [assess(row, now, view.paused) for row in view.rows],
        missing,
        now,
        errors,
        view.daemons,
        view.synced,
        this_hash,
        view.shared,
        differs_in,
        view.versions,
        view.unread,
    )


def _load_config(path: Path) -> Config:
    from rssd.models.config import load_config  # noqa: PLC0415  (pydantic, when needed)

    return load_config(path)


def not_in_database(urls: Sequence[str], rows: Sequence[SourceStatus]) -> list[str]:
    """The configured URLs no row has (URLs compared normalized). The daemon stores each
    URL as configured, so an exact match settles most of them without normalizing."""
    stored = {row.source.url for row in rows}
    missing = [url for url in urls if url not in stored]
    if not missing:
        return []
    known = {normalize_url(url) for url in stored}
    return [url for url in missing if normalize_url(url) not in known]


def main(path: Path, *, as_json: bool, failing_only: bool, category: str | None = None) -> int:
    """Print the table (or JSON); with ``failing_only``, only the sources that need a look,
    and exit 1 if there are any: a monitoring check. ``category``: only the feeds in that
    folder or below it. A broken config.toml: its errors first (on stderr too), then the
    database's view, exit 1."""
    overview = run(gather(path))
    everything = overview.assessments
    shown = [a for a in everything if a.state.needs_attention] if failing_only else everything
    if category is not None:
        try:
            shown = [a for a in shown if in_category(a.row.source.category, category)]
        except ValueError as exc:
            raise CommandError(f"--category {exc}", EXIT_USAGE) from None
    for line in overview.config_errors:
        print(safe_text(line), file=sys.stderr)
    render = render_json if as_json else render_human
    empty = f"no feed in category {category!r}" if category is not None else None
    print(render(overview, shown, empty))
    if overview.config_errors or overview.unread or (failing_only and shown):
        return EXIT_FAILURE
    return EXIT_OK


def cli(path: Path, args: argparse.Namespace) -> int:
    """``rssd`` with this command's parsed arguments (rssd/cli.py's registry)."""
    return main(path, as_json=args.json, failing_only=args.failing, category=args.category)
