"""Which event loop the daemon runs on: uvloop when it is installed, else asyncio's own.

Much of what a fetch that ends in a 304 costs rssd's main process is the event loop's own
machinery (epoll, callbacks, futures). uvloop does that in C, and the bench farm
(`bench/run.py`; figures in bench/README.md) spends less main-process CPU with it. It is a
dependency on Linux and macOS; elsewhere,
or with RSSD_EVENT_LOOP=asyncio, the standard loop runs and nothing else changes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's default loop."""
    if os.environ.get("RSSD_EVENT_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415  (optional: absent on some platforms)
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the chosen loop (same SIGINT and shutdown handling)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def loop_name() -> str:
    """For the logs: which loop runs."""
    return "asyncio" if loop_factory() is None else "uvloop"
