"""``rssd run`` and ``rssd run --once`` as a process: configure the logs, run, map every way
of ending to an exit code.

journald merges stdout and stderr, and operators filter the result with jq, so every line
this writes, on either stream, is one JSON object: a bad config, a held lock or an
unexpected crash is a log event, never a plain-text line or a bare traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from rssd import logs
from rssd.daemon import loop as event_loop
from rssd.daemon.lock import LockedError
from rssd.daemon.watcher import FileWatcher
from rssd.exits import EXIT_FAILURE, EXIT_OK
from rssd.imports import collector_paused, settle_collector
from rssd.models.config import Config, ConfigError, Trust, load_config
from rssd.models.location import config_mtime
from rssd.repo.config_versions import checked_as_is, synced_check_now
from rssd.repo.db import DatabaseError, is_driver_error

#: How long a clean exit waits for a non-daemon thread that is finishing anyway.
THREAD_EXIT_WAIT = 2.0


def run(path: Path, *, once: bool) -> int:
    logs.configure("info")  # JSON from the first line on, before the config is known
    path = path.absolute()  # in the logs as a path a collector can use (config.changed)
    log = logs.get_logger("rssd.daemon")
    watcher = FileWatcher(path)  # before reading: an edit from now on is a change
    with collector_paused():  # what is loaded now lives as long as the process
        # Before the file is read: the sync records this, so an edit made from now on
        # has another mtime, and the next start checks it.
        mtime = config_mtime(path)
        try:
            config = load_config(path, trust=synced_as_is(path, mtime))
        except ConfigError as exc:
            log.error("config.invalid", path=str(path), errors=exc.errors)
            return EXIT_FAILURE
        logs.configure(config.log_level)
        main = _main(path, config, mtime, watcher, once=once)  # its modules, before the freeze
        from rssd.daemon.startup import warn_exposed_files  # noqa: PLC0415

    warn_exposed_files(config, path)

    # Everything imported and loaded so far lives as long as the process: keep it out of
    # the cyclic GC's full passes, which showed as loop lag with many feeds (bench/), and
    # what comes next is hardly ever cyclic garbage (rssd/imports.py).
    settle_collector()
    database = config.database_label
    try:
        interrupted_by = event_loop.run(main())
        if interrupted_by is not None:
            return 128 + interrupted_by.value
    except LockedError as exc:
        log.error("daemon.locked", error_message=str(exc), database=database)
        return EXIT_FAILURE
    except DatabaseError as exc:
        log.error("database.unusable", error_message=str(exc), database=database)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:
        if is_driver_error(exc):  # e.g. the disk filled up: committed data is intact
            log.exception("database.error", error_message=str(exc), database=database)
        else:
            log.exception("daemon.crashed", error_message=f"{type(exc).__name__}: {exc}")
        return EXIT_FAILURE
    _abandon_stuck_threads(log)
    return EXIT_OK


def synced_as_is(path: Path, mtime: str | None) -> Trust:
    """Whether the database records ``path`` as synced with ``mtime`` (the file's, taken
    before it was read), accepted by this rssd's own check: the daemon checked and synced
    this very file, so it starts without checking it again (``rssd status`` trusts a file
    on similar grounds). Asked after the file was read: the mtime must still be the one
    taken before, or the text read may be an edit nobody checked."""

    def vouch(database: Path | str) -> bool:
        if mtime is None or config_mtime(path) != mtime:
            return False
        return checked_as_is(synced_check_now(database), mtime)

    return vouch


def _main(
    path: Path, config: Config, mtime: str | None, watcher: FileWatcher, *, once: bool
) -> Callable[[], Coroutine[Any, Any, signal.Signals | None]]:
    """The mode's coroutine function (its result: the signal that cut ``run --once``
    short), its modules imported now. Only the mode's own: ``run --once`` needs no claim
    loop, reload or housekeeping, the service no ``run --once``."""
    if once:
        from rssd.daemon.once import run_once  # noqa: PLC0415

        async def fetch_once() -> signal.Signals | None:
            return (await run_once(config, path, mtime)).interrupted_by

        return fetch_once
    from rssd.daemon.service import run_service  # noqa: PLC0415

    async def serve() -> signal.Signals | None:
        await run_service(path, config, watcher, mtime)
        return None

    return serve


def _abandon_stuck_threads(log: logs.LevelBoundLogger) -> None:
    """Exit now if a non-daemon thread would hold the process open after a clean stop.

    Everything that matters is closed and on disk by now; a library thread stuck in a
    system call must not turn ``systemctl stop`` into a SIGKILL after TimeoutStopSec. A
    thread that is merely finishing gets a moment first: os._exit skips multiprocessing's
    finalizers, which then shows as a resource_tracker warning on stderr.
    """
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    for thread in others:
        thread.join(THREAD_EXIT_WAIT / max(1, len(others)))
    stuck = [t.name for t in others if t.is_alive()]
    if stuck:
        log.warning("daemon.threads_abandoned", threads=stuck)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(EXIT_OK)


def cli(path: Path, args: argparse.Namespace) -> int:
    """``rssd`` with this command's parsed arguments (rssd/cli.py's registry)."""
    return run(path, once=args.once)
