"""One daemon per database: an exclusive flock on a file beside it.

flock is released by the kernel when the process dies, kill -9 included, so a stale lock
never blocks a restart. The file is never opened through a symlink (rssd.repo.files).
The file also says whether the last daemon stopped cleanly
("clean") or not ("running <pid>"): after an unclean stop the database gets a quick_check.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from rssd.repo.db import DatabaseError
from rssd.repo.files import open_beside


class LockedError(Exception):
    """Another rssd holds the lock."""


class DaemonLock:
    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".lock")
        self._fd: int | None = None
        #: What the file said before we took it: "clean", "running <pid>", or "" (new).
        self.previous_state = ""

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create lock file {self.path}: {exc.strerror}") from exc
        fd = open_beside(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip().removeprefix("running ")
            os.close(fd)
            raise LockedError(
                f"another rssd (pid {holder or 'unknown'}) is already running on this "
                f"database; lock file {self.path}"
            ) from None
        self.previous_state = os.read(fd, 64).decode(errors="replace").strip()
        self._fd = fd
        self._write(f"running {os.getpid()}")

    def _write(self, text: str) -> None:
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{text}\n".encode(), 0)
        os.fsync(self._fd)

    def mark_clean(self) -> None:
        """Record a clean stop: the next start skips the integrity check."""
        if self._fd is not None:
            self._write("clean")

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DaemonLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
