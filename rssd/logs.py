"""Structured JSON logs: one object per line on stdout, for a log collector.

Fields (README, "Logs"): ``timestamp`` (ISO 8601 UTC, ``Z``), ``level``, ``message`` (the event
name; not ``event``, which clashes with ECS), ``logger``, flat snake_case context.
Tracebacks are structured, without local variables. Long strings are cut so that a line
stays well under journald's 48 KiB. Standard-library records (aiohttp, asyncio, aiosqlite)
and ``warnings`` go through the same processors, so every line is JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from rssd.models.redact import redact

#: Libraries whose DEBUG records are their own plumbing, not rssd's decisions: aiosqlite
#: logs every statement (116 of 123 lines of a debug run). They stay at INFO or above.
QUIET_LIBRARIES = ("aiosqlite",)

#: A single field longer than this is cut; keeps a line far below journald's 48 KiB limit.
MAX_FIELD_CHARS = 4096
MAX_LINE_CHARS = 40_000


#: Field values that hold no text: nothing to redact or cut (most fields of most lines).
_SCALARS = frozenset({int, float, bool, type(None)})


def clean_fields(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    """``user:password@`` in any URL of any field (a feed URL, an error message quoting
    one, a library's exception text) becomes ``user:***@``, so a password never reaches
    the log collector, whoever wrote the line; then a long string is cut (an error
    message quoting a whole HTML page, a huge URL), and a traceback keeps its innermost
    exceptions and frames. A value JSON has no form for (a yarl URL, an exception, a set)
    becomes its ``repr`` here, masked and cut as a string is: the renderer would have
    written that ``repr`` as it was.

    One pass over the fields, by exact type first: two passes with ``isinstance`` against
    unions were 5.5 of the 18 us of processors a ``fetch.completed`` line took."""
    for key, value in event.items():
        if type(value) in _SCALARS:
            continue
        if isinstance(value, str):
            cleaned = _cut(_masked(value))
            if cleaned is not value:
                event[key] = cleaned
        elif isinstance(value, list | tuple | dict):
            event[key] = _redact_value(value)
        elif not isinstance(value, int | float):  # an IntEnum is written as its number
            event[key] = _cut(_masked(repr(value)))
    exc = event.get("exception")
    if isinstance(exc, list):
        event["exception"] = exc[-3:]  # the innermost exceptions of a chain say most
        for item in event["exception"]:
            if isinstance(item, dict) and isinstance(item.get("frames"), list):
                item["frames"] = item["frames"][-12:]
    return event


def _masked(text: str) -> str:
    """``text`` with its credentials masked (itself when it has none to mask)."""
    return redact(text) if "@" in text or "=" in text else text


def _cut(text: str) -> str:
    """``text``, cut to MAX_FIELD_CHARS with a note of how much was left out."""
    if len(text) <= MAX_FIELD_CHARS:
        return text
    return f"{text[:MAX_FIELD_CHARS]}...[{len(text) - MAX_FIELD_CHARS} more]"


def _redact_value(value: object, depth: int = 0) -> object:
    """A list, tuple or dict with every string in it masked, to four levels; below those,
    and for any value JSON has no form for, its masked ``repr``."""
    if isinstance(value, str):
        return _masked(value)
    if value is None or isinstance(value, int | float):
        return value
    if depth < 4 and isinstance(value, list | tuple):
        return [_redact_value(item, depth + 1) for item in value]
    if depth < 4 and isinstance(value, dict):
        return {key: _redact_value(item, depth + 1) for key, item in value.items()}
    return _masked(repr(value))


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


#: One encoder for every line: ``json.dumps`` with options builds a new one per call.
_ENCODER = json.JSONEncoder(default=repr, ensure_ascii=False)


def render_json(logger: WrappedLogger, name: str, event: EventDict) -> str:
    """One JSON line; a last guard keeps it under journald's limit whatever the fields."""
    line = _ENCODER.encode(event)
    if len(line) <= MAX_LINE_CHARS:
        return line
    head = {key: event[key] for key in ("timestamp", "level", "message", "logger") if key in event}
    return _ENCODER.encode({**head, "truncated_line": line[:MAX_FIELD_CHARS]})


#: Fields every line of this process carries from the moment they are known (a daemon's
#: ``daemon_id``), from any task or thread: a collector tells two daemons of one host
#: apart by them.
_PROCESS_FIELDS: dict[str, object] = {}


def bind_process(**fields: object) -> None:
    """Put ``fields`` on every line this process writes from now on; None removes one."""
    for key, value in fields.items():
        if value is None:
            _PROCESS_FIELDS.pop(key, None)
        else:
            _PROCESS_FIELDS[key] = value


def _process_fields(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    for key, value in _PROCESS_FIELDS.items():
        event.setdefault(key, value)
    return event


def _drop_color_message(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)
    return event


def shared_processors() -> list[Processor]:
    """What a standard-library record gets before the common tail (its level and logger
    name come from the record)."""
    return [
        structlog.contextvars.merge_contextvars,
        _process_fields,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        _drop_color_message,
    ]


def _tail() -> list[Processor]:
    """The processors every line ends with, rssd's own or a library's."""
    return [
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        ),
        python_warnings,
        structlog.processors.EventRenamer("message"),
        clean_fields,
        order_fields,
        render_json,
    ]


class _Sink:
    """Where every line goes: one stream, one line per write, under a lock (threads log
    too), and the level rssd's own events are filtered at (changed by a reload).

    On the event loop's thread the stream is flushed once the loop has run the current
    batch of callbacks, not after every line: a busy daemon writes hundreds of lines an
    iteration, and a flush (a write system call) for each showed in its profile. Lines from
    other threads, or with no loop running, are flushed at once."""

    def __init__(self) -> None:
        self.stream: TextIO = sys.stdout
        self.level = logging.INFO
        self.lock = threading.Lock()
        #: The loop a flush is scheduled on, if any.
        self._flush_on: asyncio.AbstractEventLoop | None = None

    def write(self, line: str) -> None:
        with self.lock:
            try:
                self.stream.write(line + "\n")
            except (OSError, ValueError):
                return  # a closed stdout loses the line; it must not stop the daemon
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._flush_on is not loop:  # a loop that stopped before flushing is replaced
            self._flush_on = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        with self.lock:
            self._flush_on = None
            with contextlib.suppress(OSError, ValueError):
                self.stream.flush()


_SINK = _Sink()


class LineLogger:
    """What structlog hands rssd's events to once rendered: the sink, directly.

    rssd's own events skip the standard library (a LogRecord, a handler, a formatter, a
    frame walk for the logger name): that path was most of the logging share of a warm
    pass's CPU. Libraries' records still go through ``logging``.
    """

    def __init__(self, name: str = "rssd") -> None:
        self.name = name

    def msg(self, line: str) -> None:
        _SINK.write(line)

    debug = info = warning = warn = error = err = critical = fatal = exception = log = msg


class LevelBoundLogger(structlog.BoundLoggerBase):
    """The methods rssd logs with, each checking the sink's level first: an event below
    it (``fetch.started`` at debug, on every fetch) costs one comparison, and the level
    can change at a reload without rebuilding the loggers modules hold."""

    def _at(self, level: int, method: str, event: str, kw: dict[str, Any]) -> None:
        if level < _SINK.level:
            return
        # What ``_proxy_to_logger`` does, without packing the fields into keywords again.
        try:
            args, fields = self._process_event(method, event, kw)
        except structlog.DropEvent:
            return
        getattr(self._logger, method)(*args, **fields)

    def debug(self, event: str, **kw: Any) -> None:
        self._at(logging.DEBUG, "debug", event, kw)

    def info(self, event: str, **kw: Any) -> None:
        self._at(logging.INFO, "info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        self._at(logging.WARNING, "warning", event, kw)

    def error(self, event: str, **kw: Any) -> None:
        self._at(logging.ERROR, "error", event, kw)

    def exception(self, event: str, **kw: Any) -> None:
        kw.setdefault("exc_info", True)
        self._at(logging.ERROR, "exception", event, kw)

    def critical(self, event: str, **kw: Any) -> None:
        self._at(logging.CRITICAL, "critical", event, kw)


def _add_logger_name(logger: WrappedLogger, name: str, event: EventDict) -> EventDict:
    event["logger"] = getattr(logger, "name", "rssd")
    return event


#: Whether structlog got rssd's processors yet (``configure`` gives them once).
_structlog_configured = False


def _configure_structlog() -> None:
    """rssd's processors, once per process, into the list structlog already has.

    Loggers are cached on first use with the processors list of that moment: a second
    ``structlog.configure`` with a new list would leave every logger used before it on the
    old one, where ``structlog.testing.capture_logs`` (which edits the current list in
    place) no longer sees them. Neither the level nor the stream is in the processors, so
    later calls of ``configure`` need not touch them."""
    global _structlog_configured  # noqa: PLW0603  (once per process)
    if _structlog_configured:
        return
    processors = structlog.get_config()["processors"]
    processors[:] = [
        structlog.contextvars.merge_contextvars,
        _process_fields,
        structlog.processors.add_log_level,
        _add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        *_tail(),
    ]
    structlog.configure(
        processors=processors,
        logger_factory=LineLogger,
        wrapper_class=LevelBoundLogger,
        cache_logger_on_first_use=True,
    )
    _structlog_configured = True


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library to one JSON stream, ``stream``."""
    _SINK.stream = stream or sys.stdout
    handler = logging.StreamHandler(_SINK.stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_tail()],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    logging.captureWarnings(True)
    _configure_structlog()


#: The name of the root handler ``configure`` installs, so that ``kept`` can find it.
_HANDLER_NAME = "rssd"


@contextlib.contextmanager
def kept() -> Iterator[None]:
    """Logging as it was before, on exit: the level, the stream and the root handler
    ``configure`` set. For a caller that runs commands in-process (the tests), each of
    which configures logging as a whole process would: ``rssd fetch`` leaves the level at
    ``error``, where a later ``capture_logs`` would see no warning."""
    stream, level = _SINK.stream, _SINK.level
    root = logging.getLogger()
    root_level = root.level
    ours = [handler for handler in root.handlers if handler.get_name() == _HANDLER_NAME]
    quiet = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    try:
        yield
    finally:
        _SINK.stream, _SINK.level = stream, level
        for handler in list(root.handlers):
            if handler.get_name() == _HANDLER_NAME and handler not in ours:
                root.removeHandler(handler)
        for handler in ours:
            root.addHandler(handler)  # a no-op for one still there
        root.setLevel(root_level)
        for name, quiet_level in quiet.items():
            logging.getLogger(name).setLevel(quiet_level)


def get_logger(name: str) -> LevelBoundLogger:
    logger: LevelBoundLogger = structlog.get_logger(name)
    return logger


def set_level(level: str) -> None:
    """The level of rssd's events and the root's; ``debug`` shows rssd's own decisions,
    not library chatter."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    _SINK.level = root.level
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))
