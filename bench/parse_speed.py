"""CPU per document of rssd's parse (rssd.fetch.worker.parse_document), feedparser-rs first
against feedparser alone, in this process (no pool):

    .venv/bin/python bench/parse_speed.py            # ~30 s: feedparser alone on the big feed
    .venv/bin/python bench/parse_speed.py --no-reference   # feedparser-rs only, ~3 s

Documents: the bench farm's RSS and Atom feeds (50 items of ~0.9 KB HTML), whole and cut
(5 new items on 45 seen, rssd/fetch/items.py), and a 3.8 MB RSS feed of 20,000 small items
(a title, a guid, a link, a date and a one-line description each). Each
figure is the median of ``--runs`` CPU-time measurements (``time.process_time``), so other
processes on the machine slow it less than wall time; the ratio of the two parsers, measured
in the same minute, is the figure to compare across machines.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm import render

from rssd.fetch.worker import ParseOutcome, parse_document

URL = "http://127.0.0.1/feeds/0"
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def archive(items: int = 20_000) -> bytes:
    """The big feed: ``items`` small RSS items."""
    body = "".join(
        f"<item><title>episode {i}</title><guid>urn:ep:{i}</guid>"
        f"<link>http://example.org/{i}</link>"
        f"<pubDate>{_DAYS[i % 7]}, {1 + i % 28:02d} Mar 2024 10:{i % 60:02d}:00 GMT</pubDate>"
        f"<description>Episode {i}.</description></item>"
        for i in range(items)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        f"<link>http://example.org/</link>{body}</channel></rss>"
    ).encode()


def cpu(work: Callable[[], ParseOutcome], runs: int) -> tuple[float, ParseOutcome]:
    times = []
    outcome = work()
    for _ in range(runs):
        started = time.process_time()
        outcome = work()
        times.append(time.process_time() - started)
    return statistics.median(times), outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--no-reference", action="store_true", help="skip feedparser alone (slow on the big feed)"
    )
    args = parser.parse_args()
    cases: list[tuple[str, bytes, str, bytes, int]] = []
    for feed, kind in ((0, "RSS"), (1, "Atom")):
        whole = render(feed, 50, 50, compress=False)
        later = render(feed, 55, 50, compress=False)
        seen = parse_document(whole.body, URL, whole.content_type, True, 60.0).seen_items
        cases.append((f"farm {kind}, 50 items", whole.body, whole.content_type, b"", args.runs))
        cases.append((f"farm {kind}, 5 new of 50", later.body, later.content_type, seen, args.runs))
    big = archive()
    cases.append((f"20,000 items, {len(big) / 1e6:.1f} MB", big, "application/rss+xml", b"", 1))
    print("| document | feedparser-rs first, CPU ms | parser | feedparser alone, CPU ms | ratio |")
    print("|---|---|---|---|---|")
    for name, body, content_type, seen, runs in cases:

        def run(
            native: bool, body: bytes = body, ct: str = content_type, s: bytes = seen
        ) -> ParseOutcome:
            return parse_document(body, URL, ct, True, 600.0, seen=s, native=native)

        fast, outcome = cpu(lambda: run(True), runs)
        assert outcome.error_code is None, outcome.message
        if args.no_reference:
            print(f"| {name} | {fast * 1000:.1f} | {outcome.parser} | - | - |", flush=True)
            continue
        slow, reference = cpu(lambda: run(False), max(1, runs // 2) if runs > 1 else 1)
        assert reference.posts == outcome.posts
        print(
            f"| {name} | {fast * 1000:.1f} | {outcome.parser} | {slow * 1000:.1f} | "
            f"{slow / fast:.1f}x |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
