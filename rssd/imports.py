"""Start-up work with the cyclic garbage collector paused: one rule for the console script
(which imports the CLI), the CLI (which imports the chosen command's modules) and ``rssd
run`` (config.toml and the daemon's modules, before its ``gc.freeze``)."""

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


def import_without_collector(name: str) -> ModuleType:
    """Import ``name`` with the cyclic garbage collector paused (``collector_paused``)."""
    with collector_paused():
        return importlib.import_module(name)
