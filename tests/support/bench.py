"""The bench's scripts (bench/*.py) as modules, for the tests that check them: they are
scripts, not a package, so they are loaded from their files."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_bench(name: str) -> ModuleType:
    """bench/NAME.py, loaded as the module ``bench_NAME``. bench/ goes on ``sys.path``: a
    script imports its siblings by name (``import farm``), as it does when run."""
    if str(BENCH) not in sys.path:
        # For the rest of the session: its scripts' names (run, farm, search) then import
        # from bench/, where no test module or library of the same name lives; a sibling a
        # script imports by name is a second copy of one loaded here as bench_NAME.
        sys.path.append(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def json_lines(script: str, *args: str, timeout: float = 300) -> list[dict[str, Any]]:
    """Run ``bench/SCRIPT ARGS`` (with ``--json`` among them) to its end, which must be
    success, and read the JSON objects it printed, one per line."""
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
