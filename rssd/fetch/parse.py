"""Parsing: a process pool of parse workers, bounded in time, never trusted to behave.

Parsing is CPU work and feedparser is pure Python, so it runs in a process pool: both cores
work and the event loop never stalls. Every parse is bounded twice: a SIGALRM inside the
worker ends a slow parse cleanly (rssd.fetch.worker), and if the worker does not answer in
time after that the pool is killed and rebuilt. Either way the job is recorded
``parse_error``; the daemon never hangs or dies on a document.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING

from rssd import metrics
from rssd.fetch.worker import ParseOutcome, parse_document, ping, worker_init
from rssd.logs import get_logger
from rssd.models.codes import ErrorCode

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["ParseOutcome", "ParsePool", "parse_document"]

log = get_logger("rssd.parse")

#: Extra time the parent gives a worker after its own alarm should have fired.
HARD_TIMEOUT_MARGIN = 5.0
#: How long closing waits for the pools' manager threads once their workers are killed.
CLOSE_WAIT_SECONDS = 5.0


class ParsePool:
    """A process pool for parse_document that survives runaway and crashing workers."""

    def __init__(self, workers: int | None = None, timeout: float = 20.0) -> None:
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.timeout = timeout
        #: Made by the first body to parse (``_pool``), as the workers are started then.
        self._executor: ProcessPoolExecutor | None = None
        #: Guards the executor and ``_closed``: the start thread, a parse and close may
        #: come at once.
        self._executor_lock = threading.Lock()
        #: Closed: no executor is made any more (a start thread still running makes none).
        self._closed = False
        self._generation = 0
        #: The workers being started off the loop (start_soon, or after a restart).
        self._starting: asyncio.Future[None] | None = None
        #: Documents handed to the pool: the pool generation, and when it started them
        #: (None: still waiting in the pool's own queue). Judged by ``_patrol``.
        self._running: dict[Future[ParseOutcome], tuple[int, float | None]] = {}
        #: Documents the patrol found overdue (their pool was killed for them).
        self._overdue: set[Future[ParseOutcome]] = set()
        self._patrol_task: asyncio.Task[None] | None = None
        #: The manager threads of the pools killed so far: closing waits for them.
        self._managers: list[threading.Thread] = []

    def _new_executor(self) -> ProcessPoolExecutor:
        # Imported here: multiprocessing and the pool's module are ~20 ms of CPU (bench/
        # startup_parts.py) that a pass of 304s, which parses nothing, never needs.
        import multiprocessing  # noqa: PLC0415
        from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415

        # forkserver: never fork the daemon itself (it has threads: aiosqlite, the resolver).
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["rssd.fetch.worker", "rssd.fetch.parsing"])
        return ProcessPoolExecutor(self.workers, mp_context=context, initializer=worker_init)

    def _pool(self) -> ProcessPoolExecutor | None:
        """The current executor, made on first use (from the start thread, or a parse);
        None once the pool is closed."""
        with self._executor_lock:
            if self._executor is None and not self._closed:
                self._executor = self._new_executor()
            return self._executor

    def prepare(self) -> None:
        """Make the executor now (multiprocessing's and the pool's imports), without its
        workers: for a service, which parses sooner or later, at its start rather than
        in the middle of its first busy minute. ``run --once`` leaves it to the first
        body to parse: a pass of 304s never needs it."""
        self._pool()

    async def start(self) -> None:
        """Start the workers from a thread: starting the forkserver and forking blocks for
        a few hundred ms, which on the loop thread showed as 200+ ms of loop lag."""
        await asyncio.to_thread(self._prestart)

    def _prestart(self) -> None:
        executor = self._pool()
        if executor is not None:  # closed meanwhile: nothing to start
            _prestart(executor, self.workers)

    @property
    def started(self) -> bool:
        """Whether the workers have been asked to start (by the first body to parse)."""
        return self._starting is not None

    def start_soon(self) -> None:
        """Start the workers in the background; the first parse waits for them."""
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
        loop = asyncio.get_running_loop()
        if self._starting is None:
            # Started by the first body to parse, not at start-up: a pass of 304s never
            # pays for the forkserver and the workers (CPU that a small machine would
            # take from the event loop just when it is busiest).
            self.start_soon()
        starting = self._starting
        assert starting is not None
        if not starting.done() and starting.get_loop() is loop:
            # Not on the loop thread: submitting now would fork the workers right here.
            await asyncio.wait([starting])
        from concurrent.futures.process import BrokenProcessPool  # noqa: PLC0415  (_pool's)

        for attempt in range(2):
            generation = self._generation
            current = self._pool()
            if current is None:
                return ParseOutcome(error_code=ErrorCode.PARSE_ERROR, message="parse pool closed")
            executor: Executor = current
            # None while submit itself raises: a pool found broken (a worker killed, its
            # start failed) before this document, which the restart below replaces.
            future: Future[ParseOutcome] | None = None
            try:
                future = executor.submit(
                    parse_document, body, url, content_type, sanitize, self.timeout, seen=seen
                )
                self._watch(future, generation, loop)
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # our caller is cancelled (shutdown)
                # The pool was shut down under this document by another parse's restart.
                self._restart(generation)
                if attempt:
                    break
            except BrokenProcessPool:
                if future is not None and future in self._overdue:
                    self._overdue.discard(future)
                    return ParseOutcome(
                        error_code=ErrorCode.PARSE_ERROR,
                        message=f"parse worker did not answer within {self.timeout:g}s; killed",
                    )
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

    def _watch(
        self, future: Future[ParseOutcome], generation: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Have the patrol judge ``future`` from when the pool starts it (see _patrol)."""
        self._running[future] = (generation, None)
        future.add_done_callback(self._running_done)
        patrol = self._patrol_task
        if patrol is None or patrol.done() or patrol.get_loop() is not loop:
            # The pool may outlive a loop (rssd fetch, tests): each loop gets its patrol.
            self._patrol_task = loop.create_task(self._patrol())

    def _running_done(self, future: Future[ParseOutcome]) -> None:
        # From the pool's manager thread: a dict pop is atomic under the GIL.
        self._running.pop(future, None)

    async def _patrol(self) -> None:
        """Kill the pool under a document that its worker's own alarm did not end.

        Every document is handed to the pool at once (no semaphore in front of it): the
        pool feeds its workers itself, so a worker that finishes starts the next document
        without waiting for the event loop, which a busy daemon answers late (with a
        semaphore in front, the workers of a warm pass sat mostly idle; bench/README.md).
        The time limit therefore counts from when the pool takes a document into its call
        queue (``running()``), where it waits for at most one document per worker, each
        ended by its alarm: 2 x timeout + HARD_TIMEOUT_MARGIN. Documents killed with the
        pool that were not overdue are retried once (parse)."""
        while self._running:
            await asyncio.sleep(min(1.0, self.timeout / 4))
            now = time.monotonic()
            limit = 2 * self.timeout + HARD_TIMEOUT_MARGIN
            for future, (generation, since) in list(self._running.items()):
                if future.done():  # its done callback may have run before we looked
                    self._running.pop(future, None)
                elif since is None:
                    if future.running():
                        self._running[future] = (generation, now)
                elif now - since > limit and generation == self._generation:
                    self._overdue.add(future)
                    self._restart(generation)

    def _restart(self, generation: int) -> None:
        if generation != self._generation:
            return  # someone already replaced the pool this attempt ran on
        self._generation += 1
        metrics.PARSE_WORKER_RESTARTS.inc()
        with self._executor_lock:
            old, self._executor = self._executor, None
        if old is not None:
            self._kill(old)
        self.start_soon()  # off the loop, as at start: a new executor

    def close(self) -> None:
        if self._starting is not None and not self._starting.done():
            with contextlib.suppress(RuntimeError):  # its loop is closed: nothing to cancel
                self._starting.cancel()
        with self._executor_lock:  # a start thread past its cancel makes no executor now
            self._closed = True
            executor = self._executor
        if executor is not None:
            self._kill(executor)

    async def aclose(self) -> None:
        """close(), then wait (off the loop, bounded) for the start thread and the pools'
        manager threads to end. Without this a run that ended while the workers were
        still starting left those threads alive; the CLI then had to leave by os._exit,
        which skips multiprocessing's finalizers, and the resource tracker complained of
        "leaked semaphore objects" on stderr."""
        starting = self._starting
        self.close()
        if starting is not None and starting.get_loop() is asyncio.get_running_loop():
            await asyncio.wait([starting], timeout=CLOSE_WAIT_SECONDS)
        managers, self._managers = self._managers, []
        await asyncio.to_thread(_join_all, managers, CLOSE_WAIT_SECONDS)

    def _kill(self, executor: ProcessPoolExecutor) -> None:
        # Under the pool's own lock: a submit in progress (the start thread) sets the
        # manager thread before it lets go, and shutdown drops the reference.
        with getattr(executor, "_shutdown_lock", threading.Lock()):
            manager = getattr(executor, "_executor_manager_thread", None)
        _kill(executor)
        if isinstance(manager, threading.Thread):
            self._managers = [t for t in self._managers if t.is_alive()]
            self._managers.append(manager)


def _join_all(threads: list[threading.Thread], timeout: float) -> None:
    for thread in threads:
        thread.join(timeout)


def _log_start_failure(future: asyncio.Future[None]) -> None:
    """Retrieve a failed start (the next submit starts the workers anyway)."""
    if not future.cancelled() and future.exception() is not None:
        log.warning("parse.pool_start_failed", error_message=repr(future.exception()))


def _prestart(executor: ProcessPoolExecutor, workers: int) -> None:
    """Make the pool spawn all its workers now (it spawns them lazily, on submit).

    SIGINT is blocked in this thread meanwhile, so the forkserver and the workers it forks
    start with it blocked: a Ctrl-C to the process group while they are still importing
    (before they ignore SIGINT) would print a KeyboardInterrupt traceback. The daemon's
    own thread still receives it.
    """
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        futures = [executor.submit(ping) for _ in range(workers)]
        for future in futures:
            future.result(timeout=60)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _kill(executor: ProcessPoolExecutor) -> None:
    """Stop the pool without waiting: a runaway worker must not hold the daemon open.

    Shut down first, then kill: shutdown waits for a submit in progress (the start thread
    may be spawning a worker right now) and no worker can be spawned after it, so the live
    process map read afterwards holds every worker there will ever be.
    """
    processes = getattr(executor, "_processes", None) or {}  # shutdown drops the reference
    executor.shutdown(wait=False, cancel_futures=True)
    workers = list(processes.values())
    for process in workers:
        if process.is_alive():
            process.kill()
    for process in workers:
        process.join(timeout=1)
