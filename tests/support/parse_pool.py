"""The parse pool's workers as the tests see them: the pool has no public handle on its
workers, and multiprocessing's list of this process's children is the one on those it
started and no longer holds (killed as the pool closed, or by the start thread)."""

from __future__ import annotations

import multiprocessing

from rssd.fetch.parse import WORKER_NAME, ParsePool


def worker_pids(pool: ParsePool) -> list[int]:
    """The pids of the workers ``pool`` uses now (test-only: reaches into the pool)."""
    workers = getattr(pool, "_workers")  # noqa: B009
    return [worker.process.pid for worker in workers]


def live_workers() -> list[int]:
    """The pids of every parse worker of this process still alive, whichever pool started
    it (``active_children`` reaps those that have ended)."""
    children = multiprocessing.active_children()
    return [child.pid for child in children if child.name == WORKER_NAME and child.pid]
