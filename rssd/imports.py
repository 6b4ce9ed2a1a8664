"""Importing without the cyclic garbage collector: one rule for the console script (which
imports the CLI) and the CLI (which imports the chosen command's modules)."""

from __future__ import annotations

import gc
import importlib
from types import ModuleType


def import_without_collector(name: str) -> ModuleType:
    """Import ``name`` with the cyclic garbage collector paused. An import allocates
    hundreds of thousands of objects (classes, functions, pydantic's schemas) and frees
    almost none: the collector's ~130 passes over them found nothing and were 7% of
    ``rssd run``'s import time (bench/README.md). Paused only if it was running."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        if was_enabled:
            gc.enable()
