"""When to reload config.toml: on SIGHUP or when the file changes (its identity, polled).
A reload that fails for any reason (the database write-locked for longer than
busy_timeout, say) is logged and tried again on the next turn: a pending reload is never
dropped. What a reload does is the service's ``reload``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from rssd.daemon import notify
from rssd.daemon.watcher import FileWatcher
from rssd.logs import get_logger

log = get_logger("rssd.daemon")

#: How often the file's identity is looked at.
WATCH_SECONDS = 1.0
#: An edit is read this long after it is noticed: a multi-step save settles meanwhile.
SETTLE_SECONDS = 0.2


class ConfigWatch:
    def __init__(
        self,
        path: Path,
        watcher: FileWatcher,
        requested: asyncio.Event,
        reload: Callable[[], Awaitable[bool]],
        status_line: Callable[[], str],
    ) -> None:
        """``requested``: set by SIGHUP; ``reload()``: validate and apply."""
        self._path = path
        self._watcher = watcher
        self._requested = requested
        self._reload = reload
        self._status_line = status_line

    async def run(self) -> None:
        pending = False
        while True:
            if self._requested.is_set():
                self._requested.clear()
                pending = True
            elif self._watcher.changed():
                log.info("config.changed", path=str(self._path))
                await asyncio.sleep(SETTLE_SECONDS)
                self._watcher.changed()
                pending = True
            if pending:
                try:
                    await self._reload()
                    pending = False
                except Exception as exc:
                    log.exception(
                        "config.reload_failed", path=str(self._path), error_message=str(exc)
                    )
                    notify.notify(f"READY=1\nSTATUS=reload failed, retrying; {self._status_line()}")
            try:
                async with asyncio.timeout(WATCH_SECONDS):
                    await self._requested.wait()
            except TimeoutError:
                pass
