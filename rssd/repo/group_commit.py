"""What both backends' writers share: a queued write and its outcome.

Group commit is one policy on two backends (rssd/repo/sqlite_writer.py, a thread;
rssd/repo/pg_writer.py, a task): the writes queued while one commits go into the next
transaction together, each in a savepoint of its own, so a failing write rolls back alone
and its exception reaches only its own caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rssd.repo.db import Tx

Work = Callable[[Tx], Awaitable[Any]]


@dataclass(frozen=True)
class Outcome:
    """What one queued item came to: its result, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None
