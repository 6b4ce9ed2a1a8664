"""ParsePool's own protocol: documents queued for, held by and lost with its workers.

The workers are real processes; a worker dies here as it would in the field: killed, or
ending itself while it reads a document (a ``str`` whose unpickling exits the process)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from rssd import metrics
from rssd.fetch import parse as parse_module
from rssd.fetch.parse import ParseOutcome, ParsePool
from rssd.models.dto import ErrorCode
from tests.conftest import rss
from tests.support.parse_pool import live_workers, worker_pids

BASE = "http://example.org/feed.xml"
RSS_TYPE = "application/rss+xml"
#: The pool's limit for documents that must parse: a hang guard only.
GENEROUS = 60.0


def feed(guid: str, *, items: int = 1, padding: int = 0) -> bytes:
    entries = [
        {"guid": f"{guid}:{n}", "title": f"{guid} {n}", "description": "x" * padding}
        for n in range(items)
    ]
    return rss(entries).encode()


class KillsItsReader(str):
    """A URL that ends the process unpickling it: a document that crashes its worker."""

    __slots__ = ()

    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (os._exit, (3,))


def restarts() -> float:
    value = metrics.enable().get_sample_value("rssd_parse_worker_restarts_total")
    return value or 0.0


@pytest.fixture
async def one_worker() -> AsyncIterator[ParsePool]:
    pool = ParsePool(workers=1, timeout=GENEROUS)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.aclose()


def guids(outcome: ParseOutcome) -> list[str]:
    assert outcome.error_code is None, outcome.message
    return [post.external_id for post in outcome.posts]


async def test_documents_queued_for_one_worker_all_come_back_to_their_callers(
    one_worker: ParsePool,
) -> None:
    outcomes = await asyncio.gather(
        *(one_worker.parse(feed(f"urn:{n}"), BASE, RSS_TYPE, sanitize=True) for n in range(12))
    )
    assert [guids(outcome) for outcome in outcomes] == [[f"urn:{n}:0"] for n in range(12)]


async def test_a_document_larger_than_the_socket_buffer_and_its_large_answer() -> None:
    """Several MB each way: the document is written as the socket drains, the answer read
    in pieces (the socket holds ~200 KB)."""
    pool = ParsePool(workers=2, timeout=GENEROUS)
    try:
        body = feed("urn:big", items=1500, padding=2000)
        assert len(body) > 3_000_000
        small = pool.parse(feed("urn:small"), BASE, RSS_TYPE, sanitize=False)
        big, small_outcome = await asyncio.gather(
            pool.parse(body, BASE, RSS_TYPE, sanitize=False), small
        )
        assert guids(big) == [f"urn:big:{n}" for n in range(1500)]
        assert all(len(post.summary or "") == 2000 for post in big.posts)
        assert guids(small_outcome) == ["urn:small:0"]
    finally:
        await pool.aclose()


async def test_documents_held_by_a_worker_that_dies_are_parsed_by_its_replacement(
    one_worker: ParsePool,
) -> None:
    """The worker is stopped, then killed, holding two documents (a third waits in the
    pool): its replacement parses all three."""
    (pid,) = worker_pids(one_worker)
    os.kill(pid, signal.SIGSTOP)
    before = restarts()
    parses = [
        asyncio.ensure_future(one_worker.parse(feed(f"urn:{n}"), BASE, RSS_TYPE, sanitize=True))
        for n in range(3)
    ]
    await asyncio.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    outcomes = await asyncio.gather(*parses)
    assert [guids(outcome) for outcome in outcomes] == [["urn:0:0"], ["urn:1:0"], ["urn:2:0"]]
    assert pid not in worker_pids(one_worker)
    assert restarts() == before + 1


async def test_a_document_that_kills_two_workers_is_given_up_and_the_others_parse() -> None:
    pool = ParsePool(workers=2, timeout=GENEROUS)
    try:
        before = restarts()
        outcomes = await asyncio.gather(
            pool.parse(feed("urn:a"), BASE, RSS_TYPE, sanitize=True),
            pool.parse(feed("urn:x"), KillsItsReader(BASE), RSS_TYPE, sanitize=True),
            *(pool.parse(feed(f"urn:{n}"), BASE, RSS_TYPE, sanitize=True) for n in range(6)),
        )
        assert outcomes[1] == ParseOutcome(
            error_code=ErrorCode.PARSE_ERROR, message="parse worker crashed"
        )
        assert guids(outcomes[0]) == ["urn:a:0"]
        assert [guids(outcome) for outcome in outcomes[2:]] == [[f"urn:{n}:0"] for n in range(6)]
        assert restarts() == before + 2
        await pool.start()  # the last replacement may still be starting
        assert len(worker_pids(pool)) == 2
    finally:
        await pool.aclose()


async def test_the_document_behind_a_runaway_one_is_parsed_by_the_replacement(
    one_worker: ParsePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the oldest document of a worker that does not answer is given up: the one
    behind it, already in its socket, is sent again to the next worker, its clock
    started afresh."""
    (pid,) = worker_pids(one_worker)
    os.kill(pid, signal.SIGSTOP)
    monkeypatch.setattr(parse_module, "HARD_TIMEOUT_MARGIN", 0.5)
    one_worker.timeout = 0.5
    first = one_worker.parse(feed("urn:first"), BASE, RSS_TYPE, sanitize=True)
    second = one_worker.parse(feed("urn:second"), BASE, RSS_TYPE, sanitize=True)
    runaway, behind = await asyncio.gather(first, second)
    assert runaway.error_code is ErrorCode.PARSE_ERROR
    assert runaway.message == "parse worker did not answer within 0.5s; killed"
    assert guids(behind) == ["urn:second:0"]
    assert pid not in worker_pids(one_worker)


async def test_a_caller_that_gives_up_leaves_the_pool_serving_the_others(
    one_worker: ParsePool,
) -> None:
    """Cancelled parses: one the worker holds (its answer is dropped), one still waiting
    in the pool (never sent). The others come back right, in their own callers."""
    parses = [
        asyncio.ensure_future(one_worker.parse(feed(f"urn:{n}"), BASE, RSS_TYPE, sanitize=True))
        for n in range(6)
    ]
    await asyncio.sleep(0)  # all six handed over: two to the worker, four waiting
    parses[1].cancel()
    parses[4].cancel()
    results = await asyncio.gather(*parses, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert isinstance(results[4], asyncio.CancelledError)
    for n in (0, 2, 3, 5):
        outcome = results[n]
        assert isinstance(outcome, ParseOutcome)
        assert guids(outcome) == [f"urn:{n}:0"]
    assert guids(await one_worker.parse(feed("urn:after"), BASE, RSS_TYPE, sanitize=True)) == [
        "urn:after:0"
    ]


async def test_parses_waiting_when_the_pool_closes_are_told_so() -> None:
    pool = ParsePool(workers=1, timeout=GENEROUS)
    await pool.start()
    (pid,) = worker_pids(pool)
    os.kill(pid, signal.SIGSTOP)  # nothing is answered before the close
    parses = [
        asyncio.ensure_future(pool.parse(feed(f"urn:{n}"), BASE, RSS_TYPE, sanitize=True))
        for n in range(3)
    ]
    await asyncio.sleep(0)
    await pool.aclose()
    closed = ParseOutcome(error_code=ErrorCode.PARSE_ERROR, message="parse pool closed")
    assert await asyncio.gather(*parses) == [closed] * 3
    assert await pool.parse(feed("urn:late"), BASE, RSS_TYPE, sanitize=True) == closed


async def test_every_answer_reaches_its_own_caller_while_workers_are_killed() -> None:
    """Two hundred documents through two workers while a task kills a worker now and then:
    each caller gets its own document's posts, or, for a document that was being parsed
    by both the worker killed under it and the next one, "parse worker crashed"."""
    pool = ParsePool(workers=2, timeout=GENEROUS)
    await pool.start()
    killed: list[int] = []

    async def killer() -> None:
        for _ in range(6):
            await asyncio.sleep(0.03)
            pids = worker_pids(pool)
            if pids:
                pid = pids[len(killed) % len(pids)]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    try:
        chaos = asyncio.ensure_future(killer())
        outcomes = await asyncio.gather(
            *(
                pool.parse(feed(f"urn:{n}", items=20), BASE, RSS_TYPE, sanitize=True)
                for n in range(200)
            )
        )
        await chaos
        crashed = ParseOutcome(error_code=ErrorCode.PARSE_ERROR, message="parse worker crashed")
        for n, outcome in enumerate(outcomes):
            if outcome != crashed:
                assert guids(outcome) == [f"urn:{n}:{i}" for i in range(20)]
        assert sum(outcome == crashed for outcome in outcomes) <= len(killed) // 2
        assert killed
    finally:
        await pool.aclose()


def test_a_start_cancelled_with_its_loop_leaves_the_next_loop_able_to_start() -> None:
    """A parse whose loop ends before the workers' start has begun (``asyncio.run``
    cancels what is left): the next loop's parse starts them (the start's place was kept
    taken, and every parse after it waited for ever)."""
    pool = ParsePool(workers=1, timeout=GENEROUS)

    async def ask_and_leave() -> None:
        # The loop ends at once: asyncio.run cancels the parse and the start it asks for.
        left = asyncio.ensure_future(pool.parse(feed("urn:left"), BASE, RSS_TYPE, sanitize=True))
        assert not left.done()

    async def ask() -> ParseOutcome:
        async with asyncio.timeout(GENEROUS):
            return await pool.parse(feed("urn:next"), BASE, RSS_TYPE, sanitize=True)

    try:
        asyncio.run(ask_and_leave())
        assert guids(asyncio.run(ask())) == ["urn:next:0"]
    finally:
        pool.close()


async def test_a_start_that_fails_fails_its_documents_and_the_next_one_starts_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Starting the workers fails (here multiprocessing's resource tracker, with EMFILE:
    a daemon out of file descriptors for a moment): the documents waiting are told so,
    and the next document starts the workers afresh (the first failure kept the pool's
    count of workers starting, and every parse after it waited for ever)."""
    from multiprocessing import resource_tracker  # noqa: PLC0415

    failures = [OSError(24, "Too many open files")]
    real = resource_tracker.ensure_running

    def ensure_running() -> None:
        if failures:
            raise failures.pop()
        real()

    monkeypatch.setattr(resource_tracker, "ensure_running", ensure_running)
    pool = ParsePool(workers=1, timeout=GENEROUS)
    try:
        async with asyncio.timeout(GENEROUS):
            first = await pool.parse(feed("urn:a"), BASE, RSS_TYPE, sanitize=True)
            assert first == ParseOutcome(
                error_code=ErrorCode.PARSE_ERROR, message="parse workers failed to start"
            )
            assert guids(await pool.parse(feed("urn:b"), BASE, RSS_TYPE, sanitize=True)) == [
                "urn:b:0"
            ]
    finally:
        await pool.aclose()


async def test_a_worker_that_dies_with_nothing_to_do_is_replaced_by_the_next_document(
    one_worker: ParsePool,
) -> None:
    """Not at once: workers that die by themselves (a memory limit killing each new
    one) would otherwise make the daemon fork without end."""
    (pid,) = worker_pids(one_worker)
    os.kill(pid, signal.SIGKILL)
    async with asyncio.timeout(GENEROUS):
        while worker_pids(one_worker):  # noqa: ASYNC110 - the loop reads the EOF
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    assert live_workers() == []  # none started in its place yet
    assert guids(await one_worker.parse(feed("urn:next"), BASE, RSS_TYPE, sanitize=True)) == [
        "urn:next:0"
    ]
    assert len(worker_pids(one_worker)) == 1


async def test_documents_waiting_for_a_start_that_never_ends_are_failed_in_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The workers' start hangs (here in its first step, multiprocessing's resource
    tracker, as a wedged forkserver would): the documents waiting are failed once no
    worker has come for the time a parse may take, instead of keeping their fetches
    waiting for ever; once the start ends, documents are parsed again."""
    import threading  # noqa: PLC0415
    from multiprocessing import resource_tracker  # noqa: PLC0415

    gate = threading.Event()
    real = resource_tracker.ensure_running

    def ensure_running() -> None:
        gate.wait(GENEROUS)
        real()

    monkeypatch.setattr(resource_tracker, "ensure_running", ensure_running)
    monkeypatch.setattr(parse_module, "HARD_TIMEOUT_MARGIN", 0.5)
    pool = ParsePool(workers=1, timeout=0.4)
    try:
        async with asyncio.timeout(GENEROUS):
            waited = asyncio.get_running_loop().time()
            first = await pool.parse(feed("urn:a"), BASE, RSS_TYPE, sanitize=True)
            waited = asyncio.get_running_loop().time() - waited
            assert first == ParseOutcome(
                error_code=ErrorCode.PARSE_ERROR,
                message="no parse worker started within 0.9s",
            )
            assert waited >= 0.9
            gate.set()
            assert guids(await pool.parse(feed("urn:b"), BASE, RSS_TYPE, sanitize=True)) == [
                "urn:b:0"
            ]
    finally:
        gate.set()
        await pool.aclose()
