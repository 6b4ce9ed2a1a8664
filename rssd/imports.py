"""Start-up work with the cyclic garbage collector paused: one rule for the console script
(which imports the CLI), the CLI (which imports the chosen command's modules) and ``rssd
run`` (config.toml and the daemon's modules, before ``settle_collector``); and how the
collector runs for the daemon once its start-up is over."""

from __future__ import annotations

import gc
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

#: Whether what a paused block loaded is frozen at its end (``gc.freeze``: never scanned
#: by the collector again). Set by the console script (rssd/__main__.py), whose process
#: runs one command: what its start-up loads lives as long as it does. The collector's
#: count of new objects does not stop while it is paused, so the first young collection
#: after the block would scan all of them, then promote them to be scanned again by the
#: older generations (bench/README.md, "Seventh round"). Off for an in-process caller of
#: ``rssd.cli.main`` (the tests), whose heap is not the command's to freeze.
FREEZE_WHAT_LOADS = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """The collector paused for the block, if it was running. What start-up allocates
    (modules, classes, pydantic's schemas, config.toml's models) lives as long as the
    process: the collector's passes over it find nothing. They were 7% of ``rssd run``'s
    import time, and half of the CPU of loading config.toml of 2,000 feeds once the
    modules were in (bench/README.md)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if FREEZE_WHAT_LOADS:
            gc.freeze()
        if was_enabled:
            gc.enable()


#: The young generation's threshold once the daemon's start-up is frozen (CPython's
#: default: 700). What the daemon allocates from then on is nearly never cyclic garbage:
#: an all-304 pass of 2,000 feeds ran ~140 young collections, 13 of the middle
#: generation and a full one, 60-80 ms of its main thread (3-5% of the pass), and they
#: freed 227 objects in all. At 10,000: 5 young collections, 3 ms (bench/README.md,
#: "Ninth round"). What a cycle holds waits at most that many allocations longer.
YOUNG_THRESHOLD = 10_000


def settle_collector() -> None:
    """Freeze what start-up loaded (``gc.freeze``: never scanned again) and space the
    young collections out (``YOUNG_THRESHOLD``): the daemon's heap from here on."""
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_THRESHOLD), middle, old)


def import_without_collector(name: str) -> ModuleType:
    """Import ``name`` with the cyclic garbage collector paused (``collector_paused``)."""
    with collector_paused():
        return importlib.import_module(name)
