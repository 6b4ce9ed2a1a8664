"""Parsing: a pool of parse worker processes, read by the event loop, never trusted to behave.

Parsing is CPU work and feedparser is pure Python, so it runs in worker processes: both
cores work and the event loop never stalls. Each worker has one socket to the daemon; the
event loop writes documents to it and reads the answers itself (``add_reader``), with no
thread in between. The standard library's ``ProcessPoolExecutor``, used before, passed
every document through a manager thread and a queue feeder thread: over twice the daemon's
CPU a document (bench/pool_handoff.py), each hand-off waiting for the GIL of a busy loop.

Every parse is bounded twice: a SIGALRM inside the worker ends a slow parse cleanly
(rssd.fetch.worker), and if the worker does not answer in time after that the parent kills
that worker and starts another. Either way the job is recorded ``parse_error``; the daemon
never hangs or dies on a document.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rssd import metrics
from rssd.fetch.worker import FRAME, ParseOutcome, parse_document, serve
from rssd.logs import get_logger
from rssd.models.codes import ErrorCode

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkServerContext
    from multiprocessing.process import BaseProcess

__all__ = ["ParseOutcome", "ParsePool", "parse_document"]

log = get_logger("rssd.parse")

#: Extra time the parent gives a worker after its own alarm should have fired.
HARD_TIMEOUT_MARGIN = 5.0
#: How long closing waits for the start thread and the killed workers.
CLOSE_WAIT_SECONDS = 5.0
#: Documents a worker holds at once: the one it parses and the next, already in its
#: socket, so that it starts that one without waiting for a busy event loop to answer.
DEPTH = 2
#: Bytes read from a worker's socket at a time (an answer is a few KB; a larger one takes
#: several reads). Below malloc's mmap threshold: a read allocates this much first.
READ_SIZE = 1 << 16

#: The workers' process name (``ps``, and multiprocessing's list of children).
WORKER_NAME = "rssd-parse"

CLOSED = ParseOutcome(error_code=ErrorCode.PARSE_ERROR, message="parse pool closed")
CRASHED = ParseOutcome(error_code=ErrorCode.PARSE_ERROR, message="parse worker crashed")


@dataclass(eq=False, slots=True)
class _Job:
    """One document: its pickled arguments, the caller's future, and how many workers it
    took down with it (once is a worker's bad luck and retried; twice is the document)."""

    payload: bytes
    future: asyncio.Future[ParseOutcome]
    timeout: float
    crashes: int = 0


@dataclass(eq=False, slots=True)
class _Ticket:
    """The workers one start owes the pool's ``_spawning`` count: the start thread pays
    each back as it goes and the rest when it ends; a start whose thread never began (its
    task cancelled first, no thread to be had) is paid back by its task's callback."""

    owed: int
    began: bool = False


@dataclass(eq=False, slots=True)
class _Worker:
    """One worker process and the parent's end of its socket."""

    process: BaseProcess
    conn: Connection
    fd: int
    #: Sent and not yet answered, oldest first: the worker answers in order.
    jobs: deque[_Job] = field(default_factory=deque)
    inbox: bytearray = field(default_factory=bytearray)
    #: What a full socket did not take yet (written when it is writable again).
    outbox: bytearray = field(default_factory=bytearray)
    #: The loop whose selector watches ``fd`` (None: not watched).
    loop: asyncio.AbstractEventLoop | None = None
    #: When the worker's oldest job was handed to it idle, or the answer before it was
    #: read (loop time; see ParsePool._patrol).
    since: float = 0.0


class ParsePool:
    """Worker processes for parse_document that survive runaway and crashing workers.

    One event loop watches the workers at a time. The pool may outlive a loop (tests share
    one pool, each with its loop): the next loop to parse takes over the idle workers, and
    those still working for a loop that ended are replaced."""

    def __init__(self, workers: int | None = None, timeout: float = 20.0) -> None:
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.timeout = timeout
        #: Made on first use (``_mp_context``): its imports are needless to a pass of 304s.
        self._context: ForkServerContext | None = None
        #: Guards what the start thread shares with the loop: ``_closed``, ``_spawning``,
        #: ``_unattached``, ``_killed``.
        self._lock = threading.Lock()
        self._closed = False
        #: Workers being started by a start thread, and those started and not yet watched.
        self._spawning = 0
        self._unattached: list[_Worker] = []
        #: The worker processes killed and not yet reaped (a start thread or aclose does).
        self._killed: list[BaseProcess] = []
        #: The loop that watches the workers (that of the last parse), the workers it
        #: watches, and documents waiting for room in one of them.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[_Worker] = []
        self._pending: deque[_Job] = deque()
        #: Start threads under way (closing waits for them).
        self._starts: set[asyncio.Task[None]] = set()
        self._started = False
        self._patrol_task: asyncio.Task[None] | None = None
        #: Since when the patrol has seen documents waiting with no worker to take them
        #: (loop time; None: it has not, or a worker came).
        self._workerless_since: float | None = None

    # -- starting ------------------------------------------------------------------------

    def _mp_context(self) -> ForkServerContext:
        if self._context is None:
            # Imported here: the forkserver's modules are CPU that a pass of 304s, which
            # parses nothing, never needs.
            import multiprocessing  # noqa: PLC0415
            import multiprocessing.forkserver  # noqa: PLC0415
            import multiprocessing.popen_forkserver  # noqa: PLC0415

            # forkserver: never fork the daemon itself (it has threads: aiosqlite, the
            # resolver). The workers' modules are preloaded once, in the forkserver.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["rssd.fetch.worker", "rssd.fetch.parsing"])
            self._context = context
        return self._context

    def prepare(self) -> None:
        """Do the imports now, without starting a worker: for a service, which parses sooner
        or later, at its start rather than in the middle of its first busy minute. ``run
        --once`` leaves it to the first body to parse: a pass of 304s never needs it."""
        self._mp_context()

    @property
    def started(self) -> bool:
        """Whether the workers have been asked to start (by the first body to parse)."""
        return self._started

    def start_soon(self) -> None:
        """Start the missing workers in the background; parses wait for them."""
        self._started = True
        loop = self._bind()
        with self._lock:
            if self._closed:
                return
            missing = self.workers - len(self._workers) - len(self._unattached) - self._spawning
            if missing <= 0:
                return
            self._spawning += missing
        ticket = _Ticket(missing)
        task = loop.create_task(self._start(ticket))
        self._starts.add(task)
        task.add_done_callback(self._starts.discard)
        task.add_done_callback(lambda _: self._settle_ticket(ticket, thread=False))

    async def start(self) -> None:
        """Start the workers now and wait until they are watched."""
        self.start_soon()
        loop = asyncio.get_running_loop()
        starts = {task for task in self._starts if task.get_loop() is loop}
        if starts:
            await asyncio.wait(starts)
        self._adopt()

    def _settle_ticket(self, ticket: _Ticket, *, thread: bool) -> None:
        """Pay back what ``ticket`` still owes: the start thread when it ends, or the start
        task when it ends and no thread began (else the count would stay taken, and no
        parse would ever start a worker again)."""
        with self._lock:
            if thread or not ticket.began:
                self._spawning -= ticket.owed
                ticket.owed = 0

    async def _start(self, ticket: _Ticket) -> None:
        # A thread: starting the forkserver and forking blocks for a few hundred ms, which
        # on the loop thread showed as 200+ ms of loop lag.
        try:
            await asyncio.to_thread(self._spawn, ticket)
        except Exception as exc:
            log.warning("parse.pool_start_failed", error_message=repr(exc))
        self._settle_ticket(ticket, thread=False)
        self._adopt()
        if not self._workers and not self._spawning and self._pending:
            # Nothing will answer: the documents fail, rather than wait for ever.
            failed = "parse workers failed to start"
            self._fail_pending(ParseOutcome(error_code=ErrorCode.PARSE_ERROR, message=failed), [])

    def _spawn(self, ticket: _Ticket) -> None:
        """Start the workers ``ticket`` owes (the start thread).

        SIGINT is blocked in this thread meanwhile, so the forkserver and the workers it
        forks start with it blocked: a Ctrl-C to the process group while they are still
        importing (before they ignore SIGINT) would print a KeyboardInterrupt traceback.
        The daemon's own thread still receives it. A worker started once the pool is
        closed is killed here: close() cannot have seen it."""
        from multiprocessing import resource_tracker  # noqa: PLC0415  (loaded: the context's)

        with self._lock:
            if not ticket.owed:  # paid back by its task already: it was cancelled first
                return
            ticket.began = True
        try:
            # The forkserver's start starts multiprocessing's resource tracker first, and
            # that unblocks SIGINT in this thread when it is done: started now, before the
            # block.
            resource_tracker.ensure_running()
            self._reap(0.0)  # the workers killed so far that are dead: not waited for
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                while ticket.owed and not self._closed:
                    worker = self._spawn_one()
                    with self._lock:
                        self._spawning -= 1
                        ticket.owed -= 1
                        if not self._closed:
                            self._unattached.append(worker)
                            continue
                    self._kill(worker)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        finally:
            self._settle_ticket(ticket, thread=True)

    def _spawn_one(self) -> _Worker:
        context = self._mp_context()
        ours, theirs = context.Pipe(duplex=True)  # a socket pair
        process = context.Process(target=serve, args=(theirs,), daemon=True, name=WORKER_NAME)
        fd = ours.fileno()
        os.set_blocking(fd, False)
        try:
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the worker has its own copy now
        return _Worker(process=process, conn=ours, fd=fd)

    def _adopt(self) -> None:
        """Watch the workers the start thread made (on the loop thread). A start task of a
        loop that is not the pool's any more leaves them to the next parse."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            return
        with self._lock:
            new, self._unattached = self._unattached, []
        for worker in new:
            self._watch(worker, loop)
            self._workers.append(worker)
        self._dispatch()

    def _watch(self, worker: _Worker, loop: asyncio.AbstractEventLoop) -> None:
        worker.loop = loop
        loop.add_reader(worker.fd, self._readable, worker)
        if worker.outbox:
            loop.add_writer(worker.fd, self._writable, worker)

    def _bind(self) -> asyncio.AbstractEventLoop:
        """The running loop, made the one that watches the workers if it is not yet.

        When the pool moves to another loop (the last one ended), idle workers are watched
        from the new one; a worker still working for the old loop is replaced, as the
        futures it would answer belong to that loop. Documents waiting for the old loop
        are dropped: nobody can await them any more."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return loop
        self._loop = loop
        for worker in list(self._workers):
            if worker.jobs:
                self._retire(worker)
                continue
            _unwatch(worker)
            self._watch(worker, loop)
        self._pending.clear()
        return loop

    # -- parsing -------------------------------------------------------------------------

    async def parse(
        self,
        body: bytes,
        url: str,
        content_type: str | None,
        *,
        sanitize: bool,
        seen: bytes = b"",
    ) -> ParseOutcome:
        if self._closed:
            return CLOSED
        loop = self._bind()
        if len(self._workers) < self.workers:
            # Started by the first body to parse, not at start-up: a pass of 304s never
            # pays for the forkserver and the workers (CPU that a small machine would take
            # from the event loop just when it is busiest). Also replaces workers that
            # failed to start.
            self.start_soon()
        payload = pickle.dumps(
            (body, url, content_type, sanitize, self.timeout, seen), pickle.HIGHEST_PROTOCOL
        )
        job = _Job(payload=payload, future=loop.create_future(), timeout=self.timeout)
        self._pending.append(job)
        if self._unattached:
            self._adopt()
        self._dispatch()
        if self._pending and not self._workers:  # the documents wait for a start
            self._ensure_patrol(loop)
        return await job.future

    def _dispatch(self) -> None:
        """Hand waiting documents to the workers with room, the least busy first."""
        while self._pending:
            worker = min(self._workers, key=_load, default=None)
            if worker is None or len(worker.jobs) >= DEPTH:
                return
            job = self._pending.popleft()
            if job.future.done():  # its caller gave up (cancelled) while it waited
                continue
            worker.jobs.append(job)
            if len(worker.jobs) == 1:
                self._taken_up(worker)
            self._send(worker, FRAME.pack(len(job.payload)), job.payload)

    def _send(self, worker: _Worker, header: bytes, payload: bytes) -> None:
        if worker.outbox:  # earlier bytes still wait: keep the order
            worker.outbox += header
            worker.outbox += payload
            return
        try:
            written = os.writev(worker.fd, (header, payload))
        except BlockingIOError:
            written = 0
        except OSError:  # the worker is gone
            self._gone_while_writing(worker)
            return
        total = len(header) + len(payload)
        if written < total:
            worker.outbox += (header + payload)[written:]
            assert worker.loop is not None
            worker.loop.add_writer(worker.fd, self._writable, worker)

    def _writable(self, worker: _Worker) -> None:
        try:
            written = os.write(worker.fd, worker.outbox)
        except BlockingIOError:
            return
        except OSError:
            self._gone_while_writing(worker)
            return
        del worker.outbox[:written]
        if not worker.outbox and worker.loop is not None:
            worker.loop.remove_writer(worker.fd)

    def _gone_while_writing(self, worker: _Worker) -> None:
        """A write found the worker dead: first take the answers it wrote before it died
        (its oldest document may be among them, not the one that killed it), then see
        it lost."""
        while worker.loop is not None:
            try:
                data = os.read(worker.fd, READ_SIZE)
            except OSError:
                break
            if not data:
                break
            self._take_in(worker, data)
        self._lost(worker)

    def _readable(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # EOF: the worker died (crashed, killed, out of memory)
            self._lost(worker)
            return
        self._take_in(worker, data)

    def _take_in(self, worker: _Worker, data: bytes) -> None:
        """Bytes from the worker: each whole answer goes to its document's caller."""
        inbox = worker.inbox
        size = len(data) - FRAME.size
        if not inbox and size >= 0 and FRAME.unpack_from(data)[0] == size:
            self._answered(worker, memoryview(data)[FRAME.size :])  # one whole answer: as is
            return
        inbox += data
        # An answer may end this worker (a write to it failed): then the rest is moot.
        while len(inbox) >= FRAME.size and worker.loop is not None:
            (size,) = FRAME.unpack_from(inbox)
            end = FRAME.size + size
            if len(inbox) < end:
                return
            answer = bytes(inbox[FRAME.size : end])
            del inbox[:end]
            self._answered(worker, answer)

    def _answered(self, worker: _Worker, answer: bytes | memoryview) -> None:
        if not worker.jobs:  # an answer to nothing asked: not our worker's protocol
            self._replace(worker)
            return
        job = worker.jobs.popleft()
        if worker.jobs:
            self._taken_up(worker)
        if not job.future.done():
            try:
                outcome = pickle.loads(answer)
            except Exception as exc:  # a broken answer is this document's error
                outcome = ParseOutcome(
                    error_code=ErrorCode.PARSE_ERROR,
                    message=f"parse worker answered badly: {type(exc).__name__}"[:500],
                )
            _settle(job, outcome)
        self._dispatch()

    # -- runaway and dead workers -------------------------------------------------------

    def _taken_up(self, worker: _Worker) -> None:
        """Time the worker's oldest document from now: it was handed to the worker idle,
        or the worker's answer to the one before has just been read (it may have started
        a little earlier: the limit leans towards the worker)."""
        assert worker.loop is not None
        worker.since = worker.loop.time()
        self._ensure_patrol(worker.loop)

    def _ensure_patrol(self, loop: asyncio.AbstractEventLoop) -> None:
        patrol = self._patrol_task
        if patrol is None or patrol.done() or patrol.get_loop() is not loop:
            self._patrol_task = loop.create_task(self._patrol())

    async def _patrol(self) -> None:
        """Kill a worker whose oldest document is overdue, while any works; fail the
        documents waiting when no worker has come for as long.

        Its own alarm ends a parse after ``timeout``; the parent gives it
        HARD_TIMEOUT_MARGIN more. One task looking a few times a second, rather than a
        timer per document: a float a document is all the busy path pays. A start that
        never ends (a wedged forkserver) would otherwise keep every document, and the
        fetch that waits for it, waiting for ever."""
        loop = asyncio.get_running_loop()
        self._workerless_since = None
        while any(worker.jobs for worker in self._workers) or self._pending:
            await asyncio.sleep(min(1.0, self.timeout / 4))
            now = loop.time()
            for worker in list(self._workers):
                if (
                    worker.jobs
                    and now - worker.since > worker.jobs[0].timeout + HARD_TIMEOUT_MARGIN
                ):
                    self._overdue(worker)
            self._waiting_without_workers(now)

    def _waiting_without_workers(self, now: float) -> None:
        if self._workers or not self._pending:
            self._workerless_since = None
            return
        if self._workerless_since is None:
            self._workerless_since = now
            return
        limit = self.timeout + HARD_TIMEOUT_MARGIN
        if now - self._workerless_since > limit:
            log.warning("parse.workers_missing", waited_seconds=round(limit, 1))
            missing = f"no parse worker started within {limit:g}s"
            self._fail_pending(ParseOutcome(error_code=ErrorCode.PARSE_ERROR, message=missing), [])
            self._workerless_since = None

    def _overdue(self, worker: _Worker) -> None:
        job = worker.jobs.popleft()
        overdue = f"parse worker did not answer within {job.timeout:g}s; killed"
        _settle(job, ParseOutcome(error_code=ErrorCode.PARSE_ERROR, message=overdue))
        self._replace(worker)

    def _lost(self, worker: _Worker) -> None:
        """The worker died. Its oldest document may have killed it: that one is tried once
        more on another worker, then given up. The ones behind it are simply sent again."""
        if worker not in self._workers:
            return
        if worker.jobs:
            job = worker.jobs[0]
            job.crashes += 1
            if job.crashes >= 2:
                worker.jobs.popleft()
                _settle(job, CRASHED)
        self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        """Kill the worker and send its documents again. Another starts in its place now
        if documents wait, else with the next document: workers that die by themselves (a
        memory limit killing each new one) must not make the daemon fork without end."""
        metrics.PARSE_WORKER_RESTARTS.inc()
        self._pending.extendleft(reversed(worker.jobs))
        worker.jobs.clear()
        self._retire(worker)
        if self._closed or not self._pending:
            return
        self.start_soon()
        self._dispatch()

    def _retire(self, worker: _Worker) -> None:
        self._workers.remove(worker)
        _unwatch(worker)
        self._kill(worker)

    def _kill(self, worker: _Worker) -> None:
        """Kill without waiting (a runaway worker must not hold the daemon up): the next
        start thread reaps it, or aclose."""
        # Only a worker still alive: one that died by itself may have been reaped by the
        # forkserver already, and its pid be another process's by now.
        with contextlib.suppress(OSError, ValueError):
            if worker.process.exitcode is None:
                worker.process.kill()
        worker.conn.close()
        with self._lock:
            self._killed.append(worker.process)

    def _reap(self, timeout: float) -> None:
        """Wait for the killed workers (off the loop), and let go of their processes'
        file descriptors: a daemon runs for years, restarting a worker now and then."""
        deadline = time.monotonic() + timeout
        with self._lock:
            killed, self._killed = self._killed, []
        for process in killed:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:  # not dead yet: the next reap
                with self._lock:
                    self._killed.append(process)
                continue
            process.close()

    # -- closing -------------------------------------------------------------------------

    def _fail_pending(self, outcome: ParseOutcome, workers: list[_Worker]) -> None:
        jobs = list(self._pending)
        self._pending.clear()
        for worker in workers:
            jobs.extend(worker.jobs)
            worker.jobs.clear()
        for job in jobs:
            _settle(job, outcome)

    def close(self) -> None:
        """Kill every worker now, and any the start thread makes from now on (it sees
        ``_closed``; aclose waits for it)."""
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
            workers += self._unattached
            self._unattached = []
        self._fail_pending(CLOSED, workers)
        patrol, self._patrol_task = self._patrol_task, None
        if patrol is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nothing to cancel
                patrol.cancel()
        for worker in workers:
            _unwatch(worker)
            self._kill(worker)

    async def aclose(self) -> None:
        """close(), then wait (off the loop, bounded) for the start thread and the killed
        workers to end. Without this a run that ended while the workers were still
        starting left a thread alive; the CLI then had to leave by os._exit, which skips
        multiprocessing's finalizers."""
        starts = {task for task in self._starts if task.get_loop() is asyncio.get_running_loop()}
        self.close()
        if starts:
            await asyncio.wait(starts, timeout=CLOSE_WAIT_SECONDS)
        await asyncio.to_thread(self._reap, CLOSE_WAIT_SECONDS)


def _load(worker: _Worker) -> int:
    return len(worker.jobs)


def _unwatch(worker: _Worker) -> None:
    loop, worker.loop = worker.loop, None
    if loop is not None and not loop.is_closed():
        loop.remove_reader(worker.fd)
        loop.remove_writer(worker.fd)


def _settle(job: _Job, outcome: ParseOutcome) -> None:
    """Give the caller its outcome, unless it gave up or its loop has ended."""
    if not job.future.done() and not job.future.get_loop().is_closed():
        job.future.set_result(outcome)
