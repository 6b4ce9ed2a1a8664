"""Where ``rssd posts --new`` remembers what it showed last: the highest post id, per
database, in the user's state directory ($XDG_STATE_HOME/rssd, else ~/.local/state/rssd).

Per user, because two people reading the same database each want their own "new"; not in
the database, because readers open it read-only and it may belong to the service's user.
Post ids grow in the order rssd stores posts, so "id above the mark" is "stored since".
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from rssd.commands.errors import CommandError
from rssd.models.redact import redact

FILE_NAME = "posts-new.json"


def state_file(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rssd" / FILE_NAME


class NewMark:
    """The ``--new`` mark of one database."""

    def __init__(self, database: Path | str, path: Path | None = None) -> None:
        # A PostgreSQL URL is its own key (without its password: the file is plain text).
        self.key = (
            str(database.resolve())
            if isinstance(database, Path)
            else redact(database, keep_user=True)
        )
        self.path = path or state_file()

    def _all(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # unreadable: start over (shows everything once), never fail
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, int)}

    def read(self) -> int:
        """The highest post id shown by the last ``--new``; 0 the first time."""
        return self._all().get(self.key, 0)

    def write(self, post_id: int) -> None:
        """Record ``post_id`` atomically (temporary file + rename)."""
        marks = self._all()
        marks[self.key] = post_id
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{FILE_NAME}.", dir=self.path.parent)
        except OSError as exc:
            raise self._error(exc) from None
        temp = Path(name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(marks, handle, indent=1, sort_keys=True)
            temp.replace(self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> CommandError:
        return CommandError(f"cannot record what --new showed in {self.path}: {exc}")
