"""The peer under test: the ``reader`` library (PyPI), driven the way its docs suggest.

    python bench/reader_driver.py setup DB URLS_FILE     # add the feeds (not timed)
    python bench/reader_driver.py update DB [--workers 20]

``update`` runs ``update_feeds(workers=N, scheduled=False)`` once and prints one JSON line:
its own elapsed seconds and the feed/entry counts afterwards. reader is imported
dynamically so that type-checking the bench does not need it installed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Protocol


class _Reader(Protocol):
    def add_feed(self, url: str, /, exist_ok: bool = ...) -> None: ...
    def update_feeds(self, *, scheduled: bool = ..., workers: int = ...) -> None: ...
    def get_feed_counts(self, *, broken: bool | None = ...) -> Any: ...
    def get_entry_counts(self) -> Any: ...
    def close(self) -> None: ...


def make_reader(db: Path) -> _Reader:
    module = importlib.import_module("reader")
    made: _Reader = module.make_reader(str(db))
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Drive the reader library for the bench.")
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup")
    setup.add_argument("db", type=Path)
    setup.add_argument("urls", type=Path)
    update = sub.add_parser("update")
    update.add_argument("db", type=Path)
    update.add_argument("--workers", type=int, default=20)
    args = parser.parse_args(argv)
    reader = make_reader(args.db)
    try:
        if args.command == "setup":
            for url in args.urls.read_text().split():
                reader.add_feed(url, exist_ok=True)
            return 0
        started = time.monotonic()
        reader.update_feeds(workers=args.workers, scheduled=False)
        elapsed = time.monotonic() - started
        feeds = reader.get_feed_counts()
        broken = reader.get_feed_counts(broken=True)
        entries = reader.get_entry_counts()
        print(
            json.dumps(
                {
                    "elapsed_seconds": round(elapsed, 3),
                    "feeds": feeds.total,
                    "broken": broken.total,
                    "entries": entries.total,
                }
            )
        )
    finally:
        reader.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
