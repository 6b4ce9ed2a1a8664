"""What handing one document to a parse worker costs the daemon's process, the parse left
out: the standard library's process pool, a pipe the main thread writes and reads, and
rssd's ParsePool.

    .venv/bin/python bench/pool_handoff.py [--documents 200] [--kilobytes 62] [--gap-ms 2]

rssd's ParsePool was a ``ProcessPoolExecutor`` over the forkserver until the fifteenth
round: a submit wakes the pool's manager thread, whose feeder thread pickles the call and
writes it to the workers' queue; the result comes back through the manager thread to the
event loop. This measures that hand-off alone, with a worker function that parses nothing
(it returns the body's length): ``--documents`` bodies of ``--kilobytes`` (the farm's
documents are ~62 KB), one every ``--gap-ms`` (as changed feeds arrive, not in one burst),
each way three rounds, median round. Figures: the CPU of this process (all its threads)
per document, and the submitting thread's alone; against them, the same bodies, pickled as
rssd's arguments, sent over a ``multiprocessing.Pipe`` to one worker process and the
answer read back by the main thread itself, the least an event loop reading the workers'
pipes could pay.
Then rssd's ParsePool as it is now (two workers whose sockets the event loop reads), the
same bodies handed to it from a coroutine: its workers really parse them, in their own
processes, so this process's CPU is still the hand-off and the answer's unpickling. The
bodies are JSON Feeds with no items, which a worker reads in ~0.1 ms: a document that
kept both workers busy would slow this process too (the cores are shared). Its event
loop's own cost of sleeping between documents is measured alone and taken off. No bare
client here: microseconds of this machine, to compare with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import pickle
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, wait
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import machine

from rssd.fetch.parse import ParsePool

ROUNDS = 3
URL = "http://example.org/"
JSON_FEED = "application/feed+json"


def length(body: bytes) -> int:
    return len(body)


def serve(conn: Connection) -> None:
    """A worker reading framed calls from its pipe until EOF, answering each."""
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        body = pickle.loads(data)[0]
        conn.send_bytes(pickle.dumps(len(body)))


def _json_feed(size: int) -> bytes:
    head = b'{"version": "https://jsonfeed.org/version/1.1", "title": "t", "description": "'
    tail = b'", "items": []}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


def _through_pool(
    pool: ProcessPoolExecutor, body: bytes, count: int, gap: float
) -> tuple[float, float]:
    process = time.process_time()
    futures = []
    submitting = 0.0
    for _ in range(count):
        started = time.thread_time()
        futures.append(pool.submit(length, body))
        submitting += time.thread_time() - started
        time.sleep(gap)
    wait(futures)
    return (time.process_time() - process) / count * 1e6, submitting / count * 1e6


def _through_pipe(conn: Connection, body: bytes, count: int, gap: float) -> float:
    process = time.process_time()
    for _ in range(count):
        conn.send_bytes(pickle.dumps((body, "http://example.org/", None, True, 20.0, b"")))
        pickle.loads(conn.recv_bytes())
        time.sleep(gap)
    return (time.process_time() - process) / count * 1e6


async def _through_parse_pool(body: bytes, count: int, gap: float) -> list[tuple[float, float]]:
    """Per round: this process's CPU per document with the pool, and with the sleeps alone."""
    pool = ParsePool(2, timeout=20.0)
    await pool.start()
    rounds = []
    try:
        await pool.parse(body, URL, JSON_FEED, sanitize=True)  # warm
        for _ in range(ROUNDS):
            process = time.process_time()
            parses = []
            for _ in range(count):
                parses.append(
                    asyncio.ensure_future(pool.parse(body, URL, JSON_FEED, sanitize=True))
                )
                await asyncio.sleep(gap)
            await asyncio.gather(*parses)
            with_pool = (time.process_time() - process) / count * 1e6
            process = time.process_time()
            for _ in range(count):
                await asyncio.sleep(gap)
            rounds.append((with_pool, (time.process_time() - process) / count * 1e6))
    finally:
        await pool.aclose()
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--kilobytes", type=int, default=62)
    parser.add_argument("--gap-ms", type=float, default=2.0)
    args = parser.parse_args(argv)
    body = _json_feed(args.kilobytes * 1000)
    gap = args.gap_ms / 1000
    context = multiprocessing.get_context("forkserver")
    pool_rounds: list[tuple[float, float]] = []
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        list(pool.map(length, [b""] * 4))  # the workers started
        for _ in range(ROUNDS):
            pool_rounds.append(_through_pool(pool, body, args.documents, gap))
    ours, theirs = context.Pipe()
    worker = context.Process(target=serve, args=(theirs,))
    worker.start()
    theirs.close()
    try:
        pipe_rounds = [_through_pipe(ours, body, args.documents, gap) for _ in range(ROUNDS)]
    finally:
        ours.close()
        worker.join(10)
    parse_pool_rounds = asyncio.run(_through_parse_pool(body, args.documents, gap))
    host = machine()
    print(
        f"hand-off CPU per document, {args.documents} documents of {args.kilobytes} KB, "
        f"{args.gap_ms:g} ms apart, median of {ROUNDS} rounds; machine: {host['cpu_model']}, "
        f"{host['cores']} cores, load average {host['load_avg'][0]}; {host['python']}"
    )
    pool_median = statistics.median(r[0] for r in pool_rounds)
    submit_median = statistics.median(r[1] for r in pool_rounds)
    print(f"  {pool_median:7.1f} us  ProcessPoolExecutor (forkserver, 2 workers), the process")
    print(f"  {submit_median:7.1f} us    of which the submitting thread")
    print(f"  {statistics.median(pipe_rounds):7.1f} us  a Pipe to one worker, main thread")
    net = statistics.median(with_pool - sleeps for with_pool, sleeps in parse_pool_rounds)
    sleeps = statistics.median(r[1] for r in parse_pool_rounds)
    print(
        f"  {net:7.1f} us  rssd's ParsePool (2 workers, the loop reads their sockets), the process"
    )
    print(f"  {sleeps:7.1f} us    the event loop's sleeps alone, taken off the line above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
