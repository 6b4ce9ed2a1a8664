"""The parse worker: bytes -> ParseOutcome, in a process of the pool (rssd.fetch.parse).

feedparser-rs parses first, feedparser where it cannot (rssd.fetch.native); both results
then go through the same code (nh3, plain-text titles, dates, ids). feedparser has a
quadratic regex (long author fields) and raises on some character references, so a parse
is bounded by a SIGALRM inside the worker; feedparser-rs's Rust code does not see that
signal until it returns, so the bound that holds for both is the parent killing the
worker. Only the new items of a changed feed are parsed (rssd.fetch.items); HTML is
sanitized with nh3 (rssd.fetch.sanitize). A JSON Feed is read by rssd.fetch.jsonfeed; an
HTML page is scanned for the feeds it links to (rssd.fetch.discover), which the main
process then fetches.

This module, the parse stack it calls (rssd.fetch.parsing) and what they import are all
the forkserver preloads and the workers run: no pydantic, no structlog, no aiohttp (16 MB
less RSS in each of three processes than when the workers imported the daemon's modules).
tests/test_parse_document.py and tests/test_worker_memory.py check it in the workers'
memory maps. The daemon's own process imports this module (the pool hands its functions
to the workers) but not the parse stack.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import struct
import threading
from multiprocessing.connection import Connection
from types import FrameType

from rssd.fetch.outcome import ParseOutcome, Parser, ParseTimeoutError
from rssd.models.codes import ErrorCode

__all__ = [
    "FRAME",
    "ParseOutcome",
    "ParseTimeoutError",
    "Parser",
    "parse_document",
    "serve",
    "worker_init",
]

#: A message's header on a worker's socket, both ways: the pickle's length.
FRAME = struct.Struct("!Q")


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise ParseTimeoutError


def parse_document(
    body: bytes,
    url: str,
    content_type: str | None,
    sanitize: bool,
    timeout: float,
    *,
    seen: bytes = b"",
    native: bool = True,
) -> ParseOutcome:
    """Runs in a worker: bytes -> ParseOutcome. Never raises.

    ``seen``: the stored fingerprints of the last document's items; those items are not
    parsed again (rssd.fetch.items). ``native``: try feedparser-rs first (False: feedparser
    alone, the reference the differential test compares with).
    """
    # The parse stack (feedparser, feedparser-rs, nh3): preloaded by the forkserver for
    # the workers, and never imported by the daemon's own process, which only hands them
    # documents (30 ms of every start-up, and memory, for nothing).
    from rssd.fetch import parsing  # noqa: PLC0415

    use_alarm = hasattr(signal, "setitimer") and _in_main_thread()
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        if parsing.looks_like_json(body, content_type):
            return parsing.parse_json(body, url, sanitize)
        body = parsing.repair_char_refs(body)
        return parsing.parse_new(body, url, content_type, sanitize, seen, native=native)
    except ParseTimeoutError:
        return ParseOutcome(
            error_code=ErrorCode.PARSE_ERROR, message=f"parse took longer than {timeout:g}s"
        )
    except RecursionError:
        return ParseOutcome(error_code=ErrorCode.PARSE_ERROR, message="document nested too deeply")
    except Exception as exc:  # feedparser raises on some hostile input: data, not a crash
        return ParseOutcome(
            error_code=ErrorCode.PARSE_ERROR,
            message=f"feedparser raised {type(exc).__name__}: {exc}"[:500],
        )
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def worker_init() -> None:
    """Workers ignore SIGINT (a Ctrl-C reaches the whole process group): the parent decides
    when they stop. And they exit when the parent dies, kill -9 included, at once: their
    socket's EOF would tell them only once the document in hand is parsed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def serve(conn: Connection) -> None:
    """A worker's life: read a document from the daemon's socket, parse it, answer; until
    the daemon closes its end.

    Each message is FRAME then a pickle: the arguments of parse_document one way, its
    ParseOutcome the other. Blocking reads and writes: this process does nothing else.
    An error here ends the worker; the daemon sees the socket close and starts another."""
    worker_init()
    fd = conn.fileno()
    while True:
        header = _read_exactly(fd, FRAME.size)
        if header is None:
            return
        payload = _read_exactly(fd, FRAME.unpack(header)[0])
        if payload is None:
            return
        body, url, content_type, sanitize, timeout, seen = pickle.loads(payload)
        outcome = parse_document(body, url, content_type, sanitize, timeout, seen=seen)
        answer = pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
        _write_all(fd, FRAME.pack(len(answer)) + answer)


def _read_exactly(fd: int, size: int) -> bytearray | None:
    """``size`` bytes from ``fd``; None at EOF (the daemon is gone)."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        read = os.readv(fd, [view[got:]])
        if read == 0:
            return None
        got += read
    return buffer


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
