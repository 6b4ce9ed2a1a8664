"""What a command imports: ``rssd ARGS`` run in a fresh interpreter that lists its modules
at the end (listed, not timed: bench/cli_speed.py and bench/startup.py have the figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.process import WAIT

PROBE = """
import contextlib, io, json, sys
from rssd.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
top = sorted({name.split(".")[0] for name in sys.modules})
own = sorted(name for name in sys.modules if name.split(".")[0] == "rssd")
print(json.dumps({"code": code, "modules": top, "rssd": own}))
"""


def probe(*args: str | Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=True,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def loaded(*args: str | Path) -> tuple[int, set[str]]:
    """The exit code and the top-level packages imported by ``rssd ARGS``."""
    report = probe(*args)
    return int(report["code"]), set(report["modules"])
