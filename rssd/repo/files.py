"""The files rssd keeps beside its database, opened so that nobody can redirect them.

Whoever can create a file in the database's folder could plant ``rssd.sqlite3.lock`` as a
symlink: followed, ``rssd run`` truncated and rewrote the link's target (a dangling link
created it). A FIFO as the database made ``rssd status`` hang in open(), and a database
that was a symlink to some empty file was turned into a database. So the database and
every file beside it must be a regular file or not exist yet, and rssd's own files are
opened with ``O_NOFOLLOW``: a clear error instead of following.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from rssd.repo.db import DatabaseError

#: The files SQLite keeps beside a database in WAL mode (and in rollback mode).
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def require_regular(path: Path, what: str) -> None:
    """Raise DatabaseError unless ``path`` is absent or a regular file (not a symlink)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise DatabaseError(f"cannot use {what} {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise DatabaseError(
            f"cannot open {what} {path}: it is {_kind(info.st_mode)}, and rssd uses only "
            f"a regular file there (point `database` at the real file)"
        )


def check_database_files(database: Path) -> None:
    """The database and SQLite's files beside it are regular files, or do not exist yet."""
    require_regular(database, "database")
    for suffix in SQLITE_COMPANIONS:
        require_regular(database.with_name(database.name + suffix), "database file")


def open_beside(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` for a file rssd creates beside the database: never through a symlink
    (``O_NOFOLLOW``), never blocking on a FIFO, and only a regular file is accepted."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DatabaseError(
                f"{path} is a symbolic link: refused (rssd never follows a link for a file "
                f"it writes beside the database; remove it)"
            ) from exc
        raise DatabaseError(f"cannot open {path}: {exc.strerror}") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise DatabaseError(f"{path} is {_kind(info.st_mode)}: refused (remove it)")
    return fd
