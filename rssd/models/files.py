"""The operator's files that config.toml names or is: read as regular files only, bounded.

config.toml, a user's ``secret_file`` and a feed's ``headers_file`` are read at every load
and reload. A FIFO would block the reader for ever (``check-config`` hung on one) and
``/dev/zero`` never ends (a ``headers_file`` pointing there grew the process to 6.7 GB in
seconds), so the file is opened without blocking, judged by ``fstat`` (a symlink is
followed: its target is what counts) and read up to a cap. The files that hold secrets
should be readable by their owner (and group) only: ``readable_by_others`` says when
they are not, for a warning. No dependencies: the light commands use it too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class NotRegularFile(OSError):
    """The path names a FIFO, a device, a directory or a socket: refused without a read."""


class FileTooLarge(OSError):
    """The file holds more than the caller's cap: refused, never read past it."""


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (a symlink to one is fine), at most
    ``limit`` of them: never more is read, even from a file that grows meanwhile. Raises
    OSError with ``strerror`` set: ``NotRegularFile``, ``FileTooLarge``, or the system's."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(0, "not a regular file")
        if info.st_size > limit:
            raise FileTooLarge(0, "too large")
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := os.read(fd, min(1 << 20, limit + 1 - size))):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise FileTooLarge(0, "too large")
    return b"".join(chunks)


def readable_by_others(path: Path) -> int | None:
    """The permission bits of the file ``path`` leads to (symlinks followed) when every
    user of the machine may read it, else None (also when it cannot be examined: reading
    it reports that)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    return stat.S_IMODE(mode) if mode & stat.S_IROTH else None
