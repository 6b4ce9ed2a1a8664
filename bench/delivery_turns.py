"""Webhook delivery rate of one user's backlog: N messages to a loopback receiver that
answers 204 at once, sent by ``DeliveryLoop.run_once``, on SQLite and on a fresh
PostgreSQL database (tests/support/postgres.py's server).

    PYTHONPATH=. .venv/bin/python bench/delivery_turns.py 300

One user's messages go one at a time, so this is the per-attempt cost of the loop's
bookkeeping (the turn's lease, the due reads, the record), not of HTTP.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from rssd.daemon.startup import sync_sources
from rssd.repo.open import open_database
from tests.support.postgres import fresh_database
from tests.support.webhooks import Receiver, make_config, user
from tests.test_delivery import fetch, once, post

FEED = "http://a.example/feed"


async def rate(target: str | None, count: int) -> tuple[float, int]:
    receiver = Receiver()
    await receiver.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            where = target or Path(folder) / "rssd.sqlite3"
            alice = user("alice", receiver.url("alice"), [FEED], notify_backlog=True)
            config = make_config(Path(folder), [FEED], [alice])
            db = await open_database(where)
            try:
                await sync_sources(db, config)
                for n in range(count):
                    await fetch(db, FEED, [post(n)])
                started = time.perf_counter()
                await once(db, config)
                return time.perf_counter() - started, len(receiver.received)
            finally:
                await db.close()
    finally:
        await receiver.stop()


async def main(count: int) -> None:
    seconds, sent = await rate(None, count)
    print(f"sqlite:     {sent} messages in {seconds:.2f} s = {sent / seconds:.0f}/s")
    async with fresh_database() as url:
        seconds, sent = await rate(url, count)
    print(f"postgresql: {sent} messages in {seconds:.2f} s = {sent / seconds:.0f}/s")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
