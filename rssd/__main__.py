"""The ``rssd`` command (console script and ``python -m rssd``).

The parse pool's forkserver runs the main script again in every worker to prepare it, so
the console script's module must be light: it imports rssd.cli (aiohttp, pydantic,
structlog: ~16 MB of RSS per process) only when called, never when merely imported. The
guard keeps an import from starting a second rssd inside each worker.

That forkserver starts as ``python -c``, whose ``sys.path`` begins with the working folder,
and imports the workers' modules with it: the daemon's own path, which multiprocessing
hands it, is ignored before Python 3.12.8 and 3.13.1 (CPython gh-117378). Run from a folder
that holds another ``rssd`` package (an old checkout), it preloaded that one, and every
document failed to parse. ``main`` sets PYTHONSAFEPATH, before any thread runs, so that the
interpreters this process starts (the forkserver, multiprocessing's resource tracker) leave
the folder out.
"""

from __future__ import annotations

import gc
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


def main() -> int:
    """Run the CLI; its modules are imported here, not at import time (see above).

    The process ends when it returns: what it allocated is freed by reference counting,
    and the cyclic collector's passes over all of it at interpreter exit (pydantic's
    schemas and every module, a visible share of a short command) would find nothing.
    """
    os.environ["PYTHONSAFEPATH"] = "1"  # for the interpreters it starts (see above)
    from rssd import imports  # noqa: PLC0415

    imports.FREEZE_WHAT_LOADS = True  # this process runs one command (rssd/imports.py)
    cli_main: Callable[[], int] = imports.import_without_collector("rssd.cli").main
    try:
        return cli_main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    raise SystemExit(main())
