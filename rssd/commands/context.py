"""What every command does first: read the config, open the database the right way.

Commands run beside the daemon, so readers open the file read-only (WAL lets them read
while it writes) and nothing here takes the daemon lock or runs crash recovery: both
belong to the one process that owns the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from msgspec import Struct

from rssd.commands.errors import CommandError
from rssd.models.location import ConfigError, config_mtime, fallback_database
from rssd.repo.config_versions import synced_config
from rssd.repo.db import Database, DatabaseError, is_driver_error
from rssd.repo.files import check_database_files
from rssd.repo.migrations import SCHEMA_VERSION
from rssd.repo.open import open_database
from rssd.repo.queries import schema_version
from rssd.repo.sources import SourceRepo

if TYPE_CHECKING:
    from rssd.models.config import Config
    from rssd.models.dto import Source

T = TypeVar("T")


def load(path: Path) -> Config:
    """The validated config, or a CommandError listing every problem (as check-config)."""
    from rssd.models.config import load_config  # noqa: PLC0415  (pydantic when validating)

    try:
        return load_config(path)
    except ConfigError as exc:
        raise CommandError("\n".join(f"{path}: {line}" for line in exc.errors)) from None


class Configured(Struct):
    """A read-only connection to the database config.toml names, and the validated config
    when it is asked for (``config()``)."""

    db: Database
    database: Path | str
    path: Path
    loaded: Config | None = None

    def config(self) -> Config:
        if self.loaded is None:
            self.loaded = load(self.path)
        return self.loaded


@asynccontextmanager
async def configured_reader(path: Path) -> AsyncIterator[Configured]:
    """``reader`` for the database config.toml names, for a command that only reads it.

    A config.toml a daemon of this rssd has validated and synced as it is now (the mtime
    and version config_sync records, as ``rssd status`` checks it) is not validated again:
    nothing in it has changed since it was, and that spares pydantic's import and the
    models, a third of a short command's time (bench/cli_speed.py). Any other file is
    validated first, in full, and its mistakes are reported as ``load`` reports them."""
    database = fallback_database(path)
    async with AsyncExitStack() as stack:
        try:
            db: Database | None = await stack.enter_async_context(reader_at(database))
        except CommandError:
            db = None  # the config's own errors, if it has any, say more
        config = None
        if db is None or not await _synced_as_is(db, path):
            config = load(path)
            if db is None or config.database != database:
                await stack.aclose()
                database = config.database
                db = await stack.enter_async_context(reader_at(database))
        yield Configured(db, database, path, config)


async def _synced_as_is(db: Database, path: Path) -> bool:
    synced = await synced_config(db)
    return synced is not None and synced.checked_as_is(config_mtime(path))


def _require_database(path: Path | str) -> Path | str:
    """The database's path (checked without opening it: a FIFO would block open()), or
    the PostgreSQL URL."""
    if not isinstance(path, Path):
        return path
    try:
        check_database_files(path)
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None
    if not path.exists():
        raise CommandError(f"no database at {path} yet: `rssd run` creates it and adds the feeds")
    return path


async def known_sources(config: Config) -> list[Source]:
    """The database's sources (their own titles, the feeds their pages led to); none when
    there is no usable database (a config not run yet is described and exported fine)."""
    try:
        async with reader(config) as db:
            return await SourceRepo(db).list()
    except CommandError:
        return []


def reader(config: Config) -> AbstractAsyncContextManager[Database]:
    """A read-only connection; refuses a database this rssd cannot read as it is."""
    return reader_at(config.database)


@asynccontextmanager
async def reader_at(
    database: Path | str, lock_wait: float | None = None
) -> AsyncIterator[Database]:
    """``reader`` for a database path (when config.toml cannot be validated); ``lock_wait``:
    see ``open_database``."""
    path = _require_database(database)
    try:
        db = await open_database(path, readonly=True, lock_wait=lock_wait)
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None
    try:
        try:
            version = await schema_version(db)
        except Exception as exc:  # "file is not a database", a damaged header, a bad schema
            if not is_driver_error(exc):
                raise
            raise CommandError(f"cannot use database {db.label}: {exc}") from None
        if version != SCHEMA_VERSION:
            raise CommandError(
                f"database {db.label} has schema version {version}, this rssd reads version "
                f"{SCHEMA_VERSION}: start `rssd run` (same version as this command) once "
                f"to bring it up to date"
            )
        yield db
    finally:
        await db.close()


@asynccontextmanager
async def writer(config: Config) -> AsyncIterator[Database]:
    """A read-write connection: writes go through the same repositories and guards as the
    daemon's, serialized with it by SQLite (busy_timeout), never by the daemon lock."""
    path = _require_database(config.database)
    try:
        db = await open_database(path)
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None
    try:
        yield db
    finally:
        await db.close()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, but the main task's result is handed over outside the task.

    On Python 3.11, ``asyncio.run`` ends with ``signal.getsignal(SIGINT)``, which formats
    an error message with the repr of its SIGINT handler, a partial holding the main task,
    whose repr includes its result: for ``rssd status`` with many feeds, a repr of every
    row, most of the command's time. The task here returns None.
    """
    box: list[T] = []

    async def wrapper() -> None:
        box.append(await main)

    asyncio.run(wrapper())
    return box[0]
