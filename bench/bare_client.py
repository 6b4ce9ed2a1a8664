"""The limit rssd is measured against: a bare aiohttp client doing only the conditional GETs.

    python bench/bare_client.py STATE_JSON URLS_FILE --max-concurrency 500 --max-per-host 2

Every URL is fetched once with the same limits rssd applies (a global semaphore, a per-host
one, one ClientSession with an unlimited connector, the same request headers), the body read
in full and dropped: no parsing, no database, no logging. The validators each response gave
(ETag, Last-Modified) are kept in STATE_JSON, read at start and written at exit, so the next
pass is conditional as rssd's is. It runs on uvloop when installed, as rssd does, and keeps
the same 0.1 s loop-lag probe. Prints one JSON line: its own elapsed seconds (first request
to last response), the statuses it saw, failures, bytes, the worst loop lag.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

#: What rssd sends (rssd.fetch.http), so the server does the same work for both.
HEADERS = {
    "Accept": (
        "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
        "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.1"
    ),
    "Accept-Encoding": "gzip, deflate",
}
LAG_PROBE_SECONDS = 0.1


async def _lag_probe(worst: list[float]) -> None:
    while True:
        start = time.monotonic()
        await asyncio.sleep(LAG_PROBE_SECONDS)
        worst[0] = max(worst[0], (time.monotonic() - start - LAG_PROBE_SECONDS) * 1000)


async def check_all(
    urls: list[str],
    validators: dict[str, list[str | None]],
    max_concurrency: int,
    max_per_host: int,
    timeout: float,
) -> dict[str, Any]:
    """GET every URL once under both limits; update ``validators`` in place."""
    overall = asyncio.Semaphore(max_concurrency)
    hosts: dict[str, asyncio.Semaphore] = {}
    statuses: Counter[str] = Counter()
    received = [0]
    pending = deque(urls)

    async def check(url: str) -> None:
        etag, modified = validators.get(url, [None, None])
        headers = dict(HEADERS)
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        host = URL(url).host or ""
        per_host = hosts.setdefault(host, asyncio.Semaphore(max_per_host))
        async with overall, per_host:
            try:
                async with session.get(url, headers=headers, allow_redirects=False) as resp:
                    body = await resp.read()
                    received[0] += len(body)
                    statuses[str(resp.status)] += 1
                    if resp.status == 200:
                        validators[url] = [
                            resp.headers.get("ETag"),
                            resp.headers.get("Last-Modified"),
                        ]
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                statuses["failed:" + type(exc).__name__] += 1

    async def worker() -> None:
        while pending:
            await check(pending.popleft())

    worst = [0.0]
    probe = asyncio.create_task(_lag_probe(worst))
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300)
    started = time.monotonic()
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as session:
        workers = min(len(urls), 2 * max_concurrency)
        await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.monotonic() - started
    probe.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await probe
    failed = sum(n for key, n in statuses.items() if not key.isdigit() or int(key) >= 400)
    return {
        "elapsed_seconds": round(elapsed, 3),
        "statuses": dict(statuses),
        "failed": failed,
        "bytes": received[0],
        "loop_lag_max_ms": round(worst[0], 1),
    }


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # noqa: PLC0415  (optional, as for rssd)
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Conditional GETs only: the HTTP limit.")
    parser.add_argument("state", type=Path, help="validators JSON (created if missing)")
    parser.add_argument("urls", type=Path, help="one URL a line")
    parser.add_argument("--max-concurrency", type=int, default=20)
    parser.add_argument("--max-per-host", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    args = parser.parse_args(argv)
    urls = [line.strip() for line in args.urls.read_text().splitlines() if line.strip()]
    validators: dict[str, list[str | None]] = (
        json.loads(args.state.read_text()) if args.state.exists() else {}
    )
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        result = runner.run(
            check_all(urls, validators, args.max_concurrency, args.max_per_host, args.timeout)
        )
    args.state.write_text(json.dumps(validators))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
