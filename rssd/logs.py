"""Structured JSON logs: one object per line on stdout, for a log collector.

Fields (README, "Logs"): ``timestamp`` (ISO 8601 UTC, ``Z``), ``level``, ``message`` (the event
name; not ``event``, which clashes with ECS), ``logger``, flat snake_case context.
Tracebacks are structured, without local variables. Long strings are cut so that a line
stays well under journald's 48 KiB. Standard-library records (aiohttp, asyncio, aiosqlite)
and ``warnings`` go through the same processors, so every line is JSON.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from rssd.models.redact import redact

#: Libraries whose DEBUG records are their own plumbing, not rssd's decisions: aiosqlite
#: logs every statement (116 of 123 lines of a debug run). They stay at INFO or above.
QUIET_LIBRARIES = ("aiosqlite",)

#: A single field longer than this is cut; keeps a line far below journald's 48 KiB limit.
MAX_FIELD_CHARS = 4096
MAX_LINE_CHARS = 40_000


def truncate_fields(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """Cut long strings (an error message quoting a whole HTML page, a huge URL)."""
    for key, value in event.items():
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            event[key] = value[:MAX_FIELD_CHARS] + f"...[{len(value) - MAX_FIELD_CHARS} more]"
    exc = event.get("exception")
    if isinstance(exc, list):
        event["exception"] = exc[-3:]  # the innermost exceptions of a chain say most
        for item in event["exception"]:
            if isinstance(item, dict) and isinstance(item.get("frames"), list):
                item["frames"] = item["frames"][-12:]
    return event


def _redact_value(value: object, depth: int = 0) -> object:
    if isinstance(value, str):
        return redact(value)
    if depth < 4 and isinstance(value, list | tuple):
        return [_redact_value(item, depth + 1) for item in value]
    if depth < 4 and isinstance(value, dict):
        return {key: _redact_value(item, depth + 1) for key, item in value.items()}
    return value


def redact_credentials(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """``user:password@`` in any URL of any field (a feed URL, an error message quoting
    one, a library's exception text) becomes ``user:***@``: a password never reaches the
    log collector, whoever wrote the line."""
    for key, value in event.items():
        event[key] = _redact_value(value)
    return event


def python_warnings(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """``warnings.warn`` text becomes a field of a ``python.warning`` event."""
    if event.get("logger") == "py.warnings":
        event["detail"] = str(event.get("event", "")).strip()
        event["event"] = "python.warning"
    return event


_FIRST = ("timestamp", "level", "message", "logger")


def order_fields(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """timestamp, level, message, logger first: what a person scanning the lines reads."""
    ordered = {key: event.pop(key) for key in _FIRST if key in event}
    ordered.update(event)
    return ordered


def render_json(logger: WrappedLogger, name: str, event: EventDict) -> str:
    """One JSON line; a last guard keeps it under journald's limit whatever the fields."""
    line = json.dumps(event, default=repr, ensure_ascii=False)
    if len(line) <= MAX_LINE_CHARS:
        return line
    head = {key: event[key] for key in ("timestamp", "level", "message", "logger") if key in event}
    return json.dumps({**head, "truncated_line": line[:MAX_FIELD_CHARS]}, ensure_ascii=False)


def _drop_color_message(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)
    return event


def shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _drop_color_message,
    ]


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library to one JSON handler on ``stream``."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors(),
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.ExceptionRenderer(
                    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
                ),
                python_warnings,
                structlog.processors.EventRenamer("message"),
                redact_credentials,
                truncate_fields,
                order_fields,
                render_json,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    logging.captureWarnings(True)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def set_level(level: str) -> None:
    """The root level; ``debug`` shows rssd's own decisions, not library chatter."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))
