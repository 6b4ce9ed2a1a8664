"""rssd.batching.Batcher: asks made meanwhile go as one batch, and each asker gets its own
answer, handed out a chunk per turn of the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence

import pytest

from rssd import batching
from rssd.batching import Batcher


async def doubled(items: Sequence[int]) -> list[int | Exception]:
    await asyncio.sleep(0)
    return [ValueError(item) if item < 0 else 2 * item for item in items]


async def test_asks_made_meanwhile_go_together_and_each_gets_its_own_answer() -> None:
    batches: list[list[int]] = []

    async def run(items: Sequence[int]) -> list[int | Exception]:
        batches.append(list(items))
        return await doubled(items)

    batcher: Batcher[int, int] = Batcher(run, max_batch=3)
    results = await asyncio.gather(*(batcher.ask(n) for n in [1, 2, -3, 4]), return_exceptions=True)
    assert results[:2] == [2, 4] and results[3] == 8
    assert isinstance(results[2], ValueError)  # to its asker alone
    assert batches == [[1, 2, -3], [4]]  # at most max_batch at a time


async def test_answers_are_handed_out_a_chunk_per_turn_so_the_loop_runs_between() -> None:
    """Hundreds of askers woken in one turn held the loop (each starting a request):
    another task gets turns while a big batch's answers go out."""
    turns = 0
    seen: list[int] = []

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def asker(batcher: Batcher[int, int], n: int) -> None:
        await batcher.ask(n)
        seen.append(turns)

    batcher: Batcher[int, int] = Batcher(doubled, max_batch=1000)
    ticking = asyncio.create_task(ticker())
    try:
        await asyncio.gather(*(asker(batcher, n) for n in range(5 * batching.ANSWER_CHUNK)))
    finally:
        ticking.cancel()
    assert len(set(seen)) >= 5, "all answered in one turn of the loop"


async def test_a_batch_cancelled_while_answering_still_answers_everyone() -> None:
    """The loop closing while answers go out: the askers not answered yet get theirs, not
    a cancellation (each answer may be a job claimed for them)."""
    batcher: Batcher[int, int] = Batcher(doubled, max_batch=1000)

    async def asker(n: int) -> int:
        answer = await batcher.ask(n)
        if n == 0:  # the first one woken: the batch is still handing out the others
            assert batcher._batches is not None
            batcher._batches.cancel()
        return answer

    count = 3 * batching.ANSWER_CHUNK
    results = await asyncio.gather(*(asker(n) for n in range(count)), return_exceptions=True)
    assert results == [2 * n for n in range(count)]


@pytest.mark.parametrize("max_batch", [1, 2])
async def test_one_ask_alone_goes_at_once(max_batch: int) -> None:
    batcher: Batcher[int, int] = Batcher(doubled, max_batch=max_batch)
    assert await batcher.ask(21) == 42
    await batcher.settle()


@pytest.mark.parametrize(
    ("linger", "expected"),
    [
        (0.0, [[1], [2, 3]]),  # the first goes at once; the others meanwhile
        (0.5, [[1, 2, 3]]),  # the first waits for the others
    ],
)
async def test_a_linger_holds_a_small_batch_for_asks_that_follow(
    linger: float, expected: list[list[int]]
) -> None:
    """Fetches end one by one: without a linger, each batch held two or three asks."""
    batches: list[list[int]] = []

    async def run(items: Sequence[int]) -> list[int | Exception]:
        batches.append(list(items))
        await asyncio.sleep(0.05)  # the database at work
        return list(items)

    batcher: Batcher[int, int] = Batcher(run, max_batch=10, linger=linger, few=4)

    async def later(n: int) -> int:
        await asyncio.sleep(0.01)
        return await batcher.ask(n)

    assert list(await asyncio.gather(batcher.ask(1), later(2), later(3))) == [1, 2, 3]
    assert batches == expected


@pytest.mark.parametrize(("few", "max_batch"), [(2, 10), (10, 2)])
async def test_asks_that_come_together_do_not_linger(few: int, max_batch: int) -> None:
    """As many asks as ``few`` at once, or a full batch, are company enough."""
    batches: list[list[int]] = []

    async def run(items: Sequence[int]) -> list[int | Exception]:
        batches.append(list(items))
        return list(items)

    batcher: Batcher[int, int] = Batcher(run, max_batch=max_batch, linger=60.0, few=few)
    done = await asyncio.wait_for(asyncio.gather(batcher.ask(1), batcher.ask(2)), timeout=5)
    assert list(done) == [1, 2] and batches == [[1, 2]]


async def test_forming_says_whether_an_ask_made_now_would_join_waiting_asks() -> None:
    """``FetchJobRepo`` sends a store with the completions only while some are waiting
    to go: a store that waited for a batch in the database, then lingered, kept the
    database writer idle meanwhile."""
    in_database = asyncio.Event()
    release = asyncio.Event()

    async def run(items: Sequence[int]) -> list[int | Exception]:
        in_database.set()
        await release.wait()
        return list(items)

    batcher: Batcher[int, int] = Batcher(run, max_batch=10, linger=60.0, few=1)
    assert not batcher.forming, "nothing asked yet"
    first = asyncio.ensure_future(batcher.ask(1))
    await asyncio.sleep(0)
    assert batcher.forming, "asked, not yet in the database"
    await in_database.wait()
    assert not batcher.forming, "in the database: an ask now would wait for it"
    second = asyncio.ensure_future(batcher.ask(2))
    await asyncio.sleep(0)
    assert batcher.forming, "waiting for the batch in the database"
    release.set()
    assert (await first, await second) == (1, 2)
    assert not batcher.forming


@pytest.mark.parametrize(("asks", "few", "holds"), [(1, 4, 1), (4, 4, 0)])
async def test_a_lingering_batch_holds_its_hold_only_while_it_lingers(
    asks: int, few: int, holds: int
) -> None:
    """``hold`` (the database's ``hold_writes``) is held during the linger, so the writes made
    meanwhile wait for the batch; it is let go before the batch runs, whose write they join.
    A batch with company enough goes at once: nothing held."""
    holding: list[bool] = []
    entered: list[int] = []
    ran_while_held: list[bool] = []

    @contextlib.contextmanager
    def hold() -> Iterator[None]:
        entered.append(len(entered))
        holding.append(True)
        try:
            yield
        finally:
            holding.pop()

    async def run(items: Sequence[int]) -> list[int | Exception]:
        ran_while_held.append(bool(holding))
        return await doubled(items)

    batcher: Batcher[int, int] = Batcher(run, max_batch=10, linger=0.05, few=few, hold=hold)
    answers = await asyncio.gather(*(batcher.ask(n) for n in range(1, asks + 1)))
    assert answers == [2 * n for n in range(1, asks + 1)]
    assert len(entered) == holds
    assert ran_while_held == [False]
    assert holding == []
