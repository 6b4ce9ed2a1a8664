"""How many documents rssd's parse pool gets through while its event loop is busy.

    .venv/bin/python bench/parse_pool.py [--documents 300] [--busy-ms 1.0] [--runs 3]

A warm pass hands the pool the changed feeds of a farm (5 new items each, the other 45
seen before, as rssd/fetch/items.py cuts them) while a thousand fetches keep the event loop
busy. This reproduces that alone: ``--documents`` such parses submitted at once to a
ParsePool of two workers (bench/farm.py's feeds, rendered in-process), while five
coroutines each burn ``--busy-ms`` of CPU per loop step. It prints parses per second for
each run. With ``--busy-ms 0`` it shows the pool's own limit.

``--switch-interval`` sets the interpreter's GIL switch interval (``sys.setswitchinterval``;
5 ms by default). It mattered while the pool was the standard library's, whose threads
handed each document over under the GIL (bench/README.md, "The parse pool under a busy
loop"); the pool the event loop reads has no thread to switch to.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm import render

from rssd.fetch.parse import ParsePool
from rssd.fetch.worker import parse_document

URL = "http://127.0.0.1/feeds/0"
TYPE = "application/rss+xml"


async def _busy(ms: float) -> None:
    while True:
        until = time.perf_counter() + ms / 1000
        while time.perf_counter() < until:
            pass
        await asyncio.sleep(0)


async def one_run(documents: int, busy_ms: float, body: bytes, seen: bytes) -> float:
    pool = ParsePool(2)
    await pool.start()
    try:
        await pool.parse(body, URL, TYPE, sanitize=True, seen=seen)  # workers warm
        hogs = [asyncio.create_task(_busy(busy_ms)) for _ in range(5)] if busy_ms else []
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(pool.parse(body, URL, TYPE, sanitize=True, seen=seen) for _ in range(documents))
        )
        elapsed = time.perf_counter() - started
        for hog in hogs:
            hog.cancel()
        assert all(o.error_code is None and len(o.posts) == 5 for o in outcomes), outcomes[0]
        return documents / elapsed
    finally:
        await pool.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=300)
    parser.add_argument("--busy-ms", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--switch-interval", type=float, default=None, metavar="SECONDS")
    args = parser.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    before, after = render(0, 50, 50, compress=False), render(0, 55, 50, compress=False)
    seen = parse_document(before.body, URL, TYPE, True, 20.0).seen_items
    rates = []
    for _ in range(args.runs):
        rates.append(asyncio.run(one_run(args.documents, args.busy_ms, after.body, seen)))
        print(f"{rates[-1]:.0f} parses/s", flush=True)
    print(
        f"median {statistics.median(rates):.0f} parses/s: {args.documents} cut parses, "
        f"loop busy {args.busy_ms:g} ms x 5 per step, switch interval "
        f"{sys.getswitchinterval() * 1000:g} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
