"""Open the database that ``database =`` names: the one module that knows both backends,
so the interface (rssd/repo/db.py) and its implementations never import each other. Each
backend is imported only when it is the one asked for (a SQLite run loads no psycopg, a
PostgreSQL one no aiosqlite)."""

from __future__ import annotations

from pathlib import Path

from rssd.repo.db import Database, is_postgres


async def open_database(
    target: Path | str, *, readonly: bool = False, lock_wait: float | None = None
) -> Database:
    """Open a SQLite file (created if needed) or connect to a PostgreSQL URL, and bring the
    schema up to date (unless ``readonly``). ``lock_wait`` (PostgreSQL): how long a
    statement may wait for a lock (a table locked by hand) before it fails."""
    if is_postgres(target):
        from rssd.repo.postgres import PostgresDatabase  # noqa: PLC0415  (backend on demand)

        return await PostgresDatabase.connect(str(target), readonly=readonly, lock_wait=lock_wait)
    from rssd.repo.sqlite import SqliteDatabase  # noqa: PLC0415  (backend on demand)

    return await SqliteDatabase.open_file(Path(target), readonly=readonly)
