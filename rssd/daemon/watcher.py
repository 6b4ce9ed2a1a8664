"""Notice edits of config.toml without inotify: poll the file's identity every second or two.

Editors save by writing a new file and renaming it over the old one, so the inode changes
while the path stays; (inode, mtime, size) catches both in-place writes and renames.
"""

from __future__ import annotations

from pathlib import Path

Stamp = tuple[int, int, int] | None


def stamp(path: Path) -> Stamp:
    try:
        info = path.stat()
    except OSError:
        return None  # missing for a moment during a rename: not a change worth a reload
    return (info.st_ino, info.st_mtime_ns, info.st_size)


class FileWatcher:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._last = stamp(path)

    def changed(self) -> bool:
        """True once per change; a vanished file is ignored until it reappears."""
        current = stamp(self.path)
        if current is None or current == self._last:
            return False
        self._last = current
        return True
