"""Database-wide maintenance that ``rssd prune --vacuum`` asks for."""

from __future__ import annotations

from rssd.repo.db import Database


async def vacuum(db: Database) -> None:
    """Rebuild the file to give pruned pages back to the filesystem, then fold the WAL in.

    VACUUM cannot run inside a transaction, so it is one statement on its own; with WAL,
    readers (the daemon's too) carry on while it runs, writers wait for it.
    """
    await db.vacuum()
