"""README's list of log events and the events the code emits stay in step (issue #16,
item 6): the code is read with ``ast`` for every ``log.<level>("event", ...)`` call, and
the README's event table for every event it documents. A new event without a line in the
README, or a documented event no code emits any more, fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
#: Log records that are not rssd's own events: the standard library's and Python warnings,
#: renamed by rssd/logs.py.
NOT_EMITTED_BY_A_CALL = {"python.warning"}


def _is_log_method(node: ast.expr) -> bool:
    """``log.info``, or ``(log.info if ok else log.error)``."""
    if isinstance(node, ast.Attribute):
        return node.attr in LEVELS and isinstance(node.value, ast.Name) and node.value.id == "log"
    if isinstance(node, ast.IfExp):
        return _is_log_method(node.body) and _is_log_method(node.orelse)
    return False


def emitted() -> dict[str, str]:
    """Every event name logged in rssd/, with the first file that logs it."""
    events: dict[str, str] = {}
    for path in sorted((ROOT / "rssd").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and _is_log_method(node.func)
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                events.setdefault(node.args[0].value, str(path.relative_to(ROOT)))
    return events


def documented() -> set[str]:
    """The events in README's "Log events" table (first column, in backquotes)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("### Log events")
    end = text.index("\n## ", start)
    return set(re.findall(r"^\| `([a-z_.]+)` \|", text[start:end], re.MULTILINE))


def test_the_scan_finds_events() -> None:
    found = emitted()
    # Events logged in the ways the code uses: plain, in an IfExp, with exc_info.
    assert {"fetch.completed", "database.checked", "daemon.locked", "stats"} <= set(found)


def test_every_logger_is_named_log() -> None:
    """The scan looks for ``log.<level>(...)``: a logger bound to another name would hide
    its events from it."""
    for path in sorted((ROOT / "rssd").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name | ast.Attribute)
                and getattr(node.value.func, "id", getattr(node.value.func, "attr", ""))
                == "get_logger"
            ):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
                assert targets == ["log"], (path, targets)


def test_every_emitted_event_is_documented() -> None:
    missing = {name: where for name, where in emitted().items() if name not in documented()}
    assert not missing, f"add these to README's Log events table: {missing}"


def test_every_documented_event_is_emitted() -> None:
    stale = documented() - set(emitted()) - NOT_EMITTED_BY_A_CALL
    assert not stale, f"README documents events no code logs: {sorted(stale)}"
