"""Parsing: feedparser in worker processes, bounded in time, never trusted to behave.

Parsing is CPU work and feedparser is pure Python, so it runs in a process pool: both cores
work and the event loop never stalls. feedparser has a quadratic regex (long author fields)
and raises on some character references, so every parse is bounded twice: a SIGALRM inside
the worker ends a slow parse cleanly, and if the worker does not answer in time after that
the pool is killed and rebuilt. Either way the job is recorded ``parse_error``; the daemon
never hangs or dies on a document.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import multiprocessing.connection
import os
import re
import signal
import threading
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from types import FrameType

import feedparser

from rssd.fetch.charrefs import repair_char_refs
from rssd.fetch.entries import clean_text, entry_to_post
from rssd.fetch.items import ItemSplit, id_digest, new_items, pack, split_items, unpack
from rssd.fetch.sanitize import sanitize_entry
from rssd.logs import get_logger
from rssd.models.changes import dedupe_posts
from rssd.models.dto import ErrorCode, PostCreate

log = get_logger("rssd.parse")

#: Extra time the parent gives a worker after its own alarm should have fired.
HARD_TIMEOUT_MARGIN = 5.0

_ALTERNATE = re.compile(
    rb"""<link\b[^>]*?\btype=["']?application/(?:rss|atom)\+xml[^>]*>""", re.IGNORECASE
)
_HREF = re.compile(rb"""\bhref=["']?([^"'\s>]+)""", re.IGNORECASE)


@dataclass(frozen=True)
class ParseOutcome:
    """A parsed document, or why it could not be used (``error_code`` set, no posts)."""

    posts: tuple[PostCreate, ...] = ()
    error_code: ErrorCode | None = None
    message: str | None = None
    #: feedparser's complaint about a document it could still read ("bozo").
    warning: str | None = None
    version: str | None = None
    title: str | None = None
    #: RSS <ttl>, minutes: how long the publisher asks readers to wait.
    ttl_minutes: int | None = None
    #: The fingerprints of every item in the document (rssd.fetch.items), to store for the
    #: next parse; b"" when the document could not be cut into items.
    seen_items: bytes = b""
    #: Items not parsed because an earlier document had them, byte for byte.
    skipped: int = 0
    #: Every item was seen before: nothing was parsed.
    all_seen: bool = False


class ParseTimeoutError(Exception):
    pass


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
) -> ParseOutcome:
    """Runs in a worker: bytes -> ParseOutcome. Never raises.

    ``seen``: the stored fingerprints of the last document's items; those items are not
    parsed again (rssd.fetch.items).
    """
    use_alarm = hasattr(signal, "setitimer") and _in_main_thread()
    if use_alarm:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return _parse_new(repair_char_refs(body), url, content_type, sanitize, seen)
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


def _parse_new(
    body: bytes, url: str, content_type: str | None, sanitize: bool, seen: bytes
) -> ParseOutcome:
    """Parse the items not in ``seen``; the whole document when cutting it is not safe."""
    split = split_items(body)
    if split is None:
        return _parse(body, url, content_type, sanitize)[0]
    stored = unpack(seen)
    if stored:
        part = new_items(body, split, stored)
        if not part.kept:
            records = {digest: stored[digest] for digest in split.digests}
            return ParseOutcome(seen_items=pack(records), skipped=part.skipped, all_seen=True)
        if part.skipped:
            outcome, ids = _parse(part.body, url, content_type, sanitize)
            if _cut_parse_holds(outcome, ids, part.kept, split, stored):
                new = dict(zip(part.kept, map(id_digest, ids), strict=True))
                records = {digest: stored.get(digest) or new[digest] for digest in split.digests}
                return replace(outcome, seen_items=pack(records), skipped=part.skipped)
    outcome, ids = _parse(body, url, content_type, sanitize)
    if outcome.error_code is not None or len(ids) != len(split.digests):
        return outcome  # items and entries do not pair up: nothing to remember
    records = dict(zip(split.digests, map(id_digest, ids), strict=True))
    return replace(outcome, seen_items=pack(records))


def _cut_parse_holds(
    outcome: ParseOutcome,
    ids: list[str],
    kept: tuple[bytes, ...],
    split: ItemSplit,
    stored: dict[bytes, bytes],
) -> bool:
    """Whether the cut document's parse stands for the whole's (rssd.fetch.items): it read
    cleanly as one entry per kept item, and no new item shares its id with a seen one in
    the same document (the whole parse would keep the first copy)."""
    if outcome.error_code is not None or outcome.warning is not None or len(ids) != len(kept):
        return False
    seen_ids = {stored[digest] for digest in split.digests if digest in stored}
    return not any(id_digest(external_id) in seen_ids for external_id in ids)


def _parse(
    body: bytes, url: str, content_type: str | None, sanitize: bool
) -> tuple[ParseOutcome, list[str]]:
    """feedparser on ``body``: the outcome, and each entry's external_id in document order
    (duplicates included)."""
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    # A file-like object, never bytes or str: given a string feedparser may open a local
    # file or URL of that name. feedparser's own sanitizer and URI resolver are off: nh3
    # does both, ~2x faster (rssd.fetch.sanitize).
    parsed = feedparser.parse(
        io.BytesIO(body),
        response_headers=headers,
        sanitize_html=False,
        resolve_relative_uris=False,
    )
    version = parsed.get("version") or None
    entries = parsed.get("entries") or []
    if sanitize:
        for entry in entries:
            sanitize_entry(entry, url)
    bozo = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if not version and not entries:
        outcome = ParseOutcome(
            error_code=ErrorCode.NOT_A_FEED, message=_not_a_feed_message(body, bozo)
        )
        return outcome, []
    feed = parsed.get("feed") or {}
    if sanitize and isinstance(feed, dict):
        sanitize_entry(feed, url)  # an Atom title may be HTML too
    posts = [entry_to_post(entry) for entry in entries]
    outcome = ParseOutcome(
        posts=tuple(dedupe_posts(posts)),
        warning=_warning(bozo),
        version=version,
        title=clean_text(feed.get("title")),
        ttl_minutes=_ttl(feed.get("ttl")),
    )
    return outcome, [post.external_id for post in posts]


#: Complaints about the HTTP headers, not the document: servers label feeds text/html or
#: text/plain all the time, and a warning on every fetch of those would drown the logs.
_BENIGN = frozenset({"NonXMLContentType", "CharacterEncodingOverride"})


def _warning(bozo: object) -> str | None:
    if bozo is None or type(bozo).__name__ in _BENIGN:
        return None
    return f"{type(bozo).__name__}: {bozo}"[:500]


def _not_a_feed_message(body: bytes, bozo: object) -> str:
    if not body.strip():
        return "empty body"
    head = body[:65536]
    if b"<html" in head.lower():
        link = _ALTERNATE.search(head)
        href = _HREF.search(link.group(0)) if link else None
        if href:
            found = href.group(1).decode("utf-8", "replace")
            return f"an HTML page, not a feed; it links to a feed at {found}"
        return "an HTML page, not a feed"
    reason = f" ({type(bozo).__name__}: {bozo})" if bozo else ""
    return f"not an RSS or Atom document{reason}"[:500]


def _ttl(value: object) -> int | None:
    try:
        minutes = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return minutes if minutes > 0 else None


def _worker_init() -> None:
    """Workers ignore SIGINT (a Ctrl-C reaches the whole process group): the parent decides
    when they stop. And they exit when the parent dies, kill -9 included: a worker blocked
    on the call queue holds that queue's write end itself and would never see EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


class ParsePool:
    """A process pool for parse_document that survives runaway and crashing workers."""

    def __init__(self, workers: int | None = None, timeout: float = 20.0) -> None:
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.timeout = timeout
        self._executor = self._new_executor()
        self._generation = 0
        #: The workers being started off the loop (start_soon, or after a restart).
        self._starting: asyncio.Future[None] | None = None
        # One document per worker at a time: the hard timeout must measure a running
        # parse, not time spent queued behind runaway documents.
        self._slots = asyncio.Semaphore(self.workers)

    def _new_executor(self) -> ProcessPoolExecutor:
        # forkserver: never fork the daemon itself (it has threads: aiosqlite, the resolver).
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["feedparser", "rssd.fetch.parse"])
        return ProcessPoolExecutor(self.workers, mp_context=context, initializer=_worker_init)

    async def start(self) -> None:
        """Start the workers from a thread: starting the forkserver and forking blocks for
        a few hundred ms, which on the loop thread showed as 200+ ms of loop lag."""
        await asyncio.to_thread(_prestart, self._executor, self.workers)

    def start_soon(self) -> None:
        """Start the workers in the background; the first parse waits for them. Fetching
        need not wait: the ~0.4 s start overlaps the first downloads (and a run of 304s
        may never need a worker)."""
        self._starting = asyncio.ensure_future(self.start())
        self._starting.add_done_callback(_log_start_failure)

    async def parse(
        self,
        body: bytes,
        url: str,
        content_type: str | None,
        *,
        sanitize: bool,
        seen: bytes = b"",
    ) -> ParseOutcome:
        if self._starting is not None and not self._starting.done():
            # Not on the loop thread: submitting now would fork the workers right here.
            await asyncio.wait([self._starting])
        for attempt in range(2):
            generation = self._generation
            executor: Executor = self._executor
            try:
                async with self._slots:
                    future = executor.submit(
                        parse_document, body, url, content_type, sanitize, self.timeout, seen=seen
                    )
                    async with asyncio.timeout(self.timeout + HARD_TIMEOUT_MARGIN):
                        return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # our caller is cancelled (shutdown)
                # The pool was shut down under this document by another parse's restart.
                self._restart(generation)
                if attempt:
                    break
            except TimeoutError:
                self._restart(generation)
                return ParseOutcome(
                    error_code=ErrorCode.PARSE_ERROR,
                    message=f"parse worker did not answer within {self.timeout:g}s; killed",
                )
            except BrokenProcessPool:
                # Another parse killed the pool, or this document crashed its worker: try
                # once more on a fresh pool, then give up on this document only.
                self._restart(generation)
                if attempt:
                    break
            except Exception as exc:  # e.g. the alarm firing just after the parse returned
                return ParseOutcome(
                    error_code=ErrorCode.PARSE_ERROR,
                    message=f"parse worker failed: {type(exc).__name__}: {exc}"[:500],
                )
        return ParseOutcome(error_code=ErrorCode.PARSE_ERROR, message="parse worker crashed")

    def _restart(self, generation: int) -> None:
        if generation != self._generation:
            return  # someone already replaced the pool this attempt ran on
        self._generation += 1
        old = self._executor
        self._executor = self._new_executor()
        _kill(old)
        self.start_soon()  # off the loop, as at start

    def close(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
        _kill(self._executor)


def _log_start_failure(future: asyncio.Future[None]) -> None:
    """Retrieve a failed start (the next submit starts the workers anyway)."""
    if not future.cancelled() and future.exception() is not None:
        log.warning("parse.pool_start_failed", error_message=repr(future.exception()))


def _ping() -> int:
    return os.getpid()


def _prestart(executor: ProcessPoolExecutor, workers: int) -> None:
    """Make the pool spawn all its workers now (it spawns them lazily, on submit)."""
    futures = [executor.submit(_ping) for _ in range(workers)]
    for future in futures:
        future.result(timeout=60)


def _kill(executor: ProcessPoolExecutor) -> None:
    """Stop the pool without waiting: a runaway worker must not hold the daemon open."""
    processes = list(getattr(executor, "_processes", {}).values())
    for process in processes:
        if process.is_alive():
            process.kill()
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=1)
