"""A loopback feed farm for the benchmark: N pre-rendered RSS 2.0 / Atom feeds.

Feed ``i`` is ``http://127.0.0.<1 + i % hosts>:<port>/feeds/<i>``: one aiohttp server
listening on ``hosts`` loopback addresses (127.0.0.1 .. 127.0.0.<hosts>, all on the same
port; Linux routes the whole 127.0.0.0/8 to ``lo``), so a per-host limit sees ``hosts``
hosts, as it would on the real web. Even feeds are RSS 2.0, odd ones Atom; each holds the
newest ``items`` posts of ~1 KB of HTML (a 50-item feed is ~55 KB). Every body is rendered
once, up front, so serving costs the farm little CPU.

Latency (``--latency-ms``, off by default): every feed response waits before its headers,
a lognormal time with that median and ``--latency-sigma`` (capped at ``--latency-max-ms``),
as real servers take 50 ms to seconds. The delay of the k-th request for feed i since the
last reset is a function of (seed, i, k) only, so two clients that each fetch every feed once
per pass meet the very same delays, whatever order they ask in.

The farm also counts the requests it is serving at once (``in_flight``): its peak and its
integral over time (``in_flight_seconds``), the same for any client under test.

Control endpoints (any of the addresses):

- ``POST /_reset``: back to epoch 0, validators on, churn off (same bodies as at start);
  the per-feed request counts (latency draws) and the in-flight peak start again.
- ``POST /_epoch?fraction=0.1``: next epoch; that fraction of the feeds (a seeded, repeatable
  choice) gains ``new_items`` posts. Bodies are re-rendered before the answer.
- ``POST /_mode?validators=0|1&churn=0|1``: validators = ETag/Last-Modified sent and
  conditional requests answered 304; churn = every response carries a fresh build
  timestamp in the channel (body and ETag change on every request, items do not; no 304).
- ``GET /_stats``: requests, 200s, 304s, bytes sent, the farm's own CPU seconds.

Standalone: ``python bench/farm.py --feeds 1000`` (``--help`` for the switches).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import html
import json
import math
import random
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

from aiohttp import web

#: Item ``s`` of every feed is published at BASE_TIME + s hours.
BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
MAX_HOSTS = 250

_VOCABULARY = (
    "async loop feed parse sqlite kernel socket cache queue worker thread process index "
    "schema commit rollback entry channel atom rss guid link title author summary content "
    "digest header etag server client request response timeout retry backoff signal "
    "daemon journal systemd config reload memory profile latency throughput benchmark "
    "farm host"
)
_WORDS = tuple(_VOCABULARY.split())


def _paragraphs(seed: int, count: int = 64, words: int = 30) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        text = " ".join(rng.choice(_WORDS) for _ in range(words))
        out.append(text[0].upper() + text[1:])
    return out


_PARAS = _paragraphs(5)


def feed_url(index: int, hosts: int, port: int) -> str:
    """The URL of feed ``index`` on a farm with ``hosts`` addresses listening on ``port``."""
    return f"http://127.0.0.{1 + index % hosts}:{port}/feeds/{index}"


def http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def item_html(feed: int, seq: int) -> str:
    """~1 KB of HTML: paragraphs, a relative link, an image, a list, inline markup."""
    p = len(_PARAS)
    a, b, c = (_PARAS[(feed * 7 + seq * 3 + k) % p] for k in range(3))
    w = _WORDS
    return (
        f'<p>{a}. <a href="/posts/{seq}">Read more</a>.</p>\n'
        f"<p><em>{b}</em> and <code>x = {seq}</code>.</p>\n"
        f'<img src="/img/{seq}.png" alt="figure {seq}" width="640" height="480">\n'
        f"<ul><li>{w[seq % len(w)]}</li><li>{w[(seq * 5) % len(w)]}</li>"
        f"<li>{w[(feed + seq) % len(w)]}</li></ul>\n"
        f"<p><strong>{c}</strong>.</p>"
    )


def _title(feed: int, seq: int) -> str:
    w = _WORDS
    return f"Feed {feed}, post {seq}: {w[(feed + seq) % len(w)]} {w[(seq * 7) % len(w)]}"


def _rss_item(feed: int, seq: int) -> str:
    published = BASE_TIME + timedelta(hours=seq)
    return (
        f"<item>\n<title>{_title(feed, seq)}</title>\n"
        f"<link>https://site{feed}.example/posts/{seq}</link>\n"
        f'<guid isPermaLink="false">farm-{feed}-{seq}</guid>\n'
        f"<pubDate>{http_date(published)}</pubDate>\n"
        f"<dc:creator>Author {seq % 5}</dc:creator>\n"
        f"<category>{_WORDS[seq % len(_WORDS)]}</category>\n"
        f"<description><![CDATA[{item_html(feed, seq)}]]></description>\n</item>\n"
    )


def _atom_entry(feed: int, seq: int) -> str:
    published = _iso(BASE_TIME + timedelta(hours=seq))
    return (
        f"<entry>\n<title>{_title(feed, seq)}</title>\n"
        f"<id>urn:farm:{feed}:{seq}</id>\n"
        f'<link rel="alternate" href="https://site{feed}.example/posts/{seq}"/>\n'
        f"<published>{published}</published>\n<updated>{published}</updated>\n"
        f"<author><name>Author {seq % 5}</name></author>\n"
        f'<category term="{_WORDS[seq % len(_WORDS)]}"/>\n'
        f'<content type="html">{html.escape(item_html(feed, seq), quote=False)}</content>\n'
        f"</entry>\n"
    )


@dataclass(frozen=True)
class Rendered:
    """One feed's body, split around the channel's build-timestamp slot."""

    prefix: bytes
    suffix: bytes
    body: bytes  # prefix + the static slot + suffix
    gzipped: bytes | None
    etag: str
    last_modified: str
    atom: bool

    @property
    def content_type(self) -> str:
        kind = "atom" if self.atom else "rss"
        return f"application/{kind}+xml; charset=utf-8"


def _slot(atom: bool, moment: datetime, build: int) -> bytes:
    if atom:
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return f"<updated>{stamp}</updated>\n<generator>farm build {build}</generator>\n".encode()
    return (
        f"<lastBuildDate>{http_date(moment)}</lastBuildDate>\n"
        f"<generator>farm build {build}</generator>\n"
    ).encode()


def render(feed: int, head: int, items: int, *, compress: bool) -> Rendered:
    """Feed ``feed`` with posts ``head - items + 1 .. head``, newest first."""
    atom = feed % 2 == 1
    seqs = range(head, max(head - items, 0), -1)
    newest = BASE_TIME + timedelta(hours=head)
    if atom:
        prefix = (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            '<feed xmlns="http://www.w3.org/2005/Atom">\n'
            f"<title>Farm feed {feed}</title>\n<id>urn:farm:feed:{feed}</id>\n"
            f'<link rel="alternate" href="https://site{feed}.example/"/>\n'
        )
        entries = "".join(_atom_entry(feed, s) for s in seqs)
        suffix = f"{entries}</feed>\n"
    else:
        prefix = (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">\n<channel>\n'
            f"<title>Farm feed {feed}</title>\n<link>https://site{feed}.example/</link>\n"
            f"<description>Loopback benchmark feed {feed}</description>\n"
            "<language>en</language>\n"
        )
        entries = "".join(_rss_item(feed, s) for s in seqs)
        suffix = f"{entries}</channel>\n</rss>\n"
    pre, post = prefix.encode(), suffix.encode()
    body = pre + _slot(atom, newest, 0) + post
    return Rendered(
        prefix=pre,
        suffix=post,
        body=body,
        gzipped=gzip.compress(body, 6) if compress else None,
        etag=f'"f{feed}-h{head}"',
        last_modified=http_date(newest),
        atom=atom,
    )


@dataclass(frozen=True)
class FarmSettings:
    feeds: int = 1000
    items: int = 50
    hosts: int = 50
    new_items: int = 5
    gzip: bool = False
    seed: int = 1
    #: Median response delay; 0: answer at once.
    latency_median_ms: float = 0.0
    #: Sigma of the delay's underlying normal: 1.0 puts p90 at 3.6x, p99 at 10x the median.
    latency_sigma: float = 1.0
    latency_max_ms: float = 10_000.0


def latency_seconds(settings: FarmSettings, feed: int, nth: int) -> float:
    """The delay of the ``nth`` request (from 0) for ``feed``: seeded, lognormal, capped."""
    if settings.latency_median_ms <= 0:
        return 0.0
    rng = random.Random((settings.seed << 48) ^ (nth << 32) ^ feed)
    delay_ms = settings.latency_median_ms * math.exp(settings.latency_sigma * rng.gauss(0, 1))
    return min(delay_ms, settings.latency_max_ms) / 1000


class Farm:
    """The feeds' state (epoch, heads, switches), their bodies, and the HTTP handlers."""

    def __init__(self, settings: FarmSettings) -> None:
        if not 1 <= settings.hosts <= MAX_HOSTS:
            raise ValueError(f"hosts must be in 1..{MAX_HOSTS}")
        self.settings = settings
        self.epoch = 0
        self.validators = True
        self.churn = False
        self.heads = [settings.items] * settings.feeds
        self.build = 0
        self.stats = {"requests": 0, "200": 0, "304": 0, "404": 0, "bytes": 0}
        self.asked = [0] * settings.feeds  # requests per feed since the last reset
        self.in_flight = 0
        self.in_flight_peak = 0
        self.in_flight_seconds = 0.0  # the integral of in_flight over time
        self._in_flight_since = time.monotonic()
        started = time.process_time()
        self.bodies = [self._render(i) for i in range(settings.feeds)]
        self.render_seconds = time.process_time() - started

    def _render(self, feed: int) -> Rendered:
        s = self.settings
        return render(feed, self.heads[feed], s.items, compress=s.gzip)

    def reset(self) -> None:
        stale = [i for i, head in enumerate(self.heads) if head != self.settings.items]
        self.heads = [self.settings.items] * self.settings.feeds
        for i in stale:
            self.bodies[i] = self._render(i)
        self.epoch, self.validators, self.churn, self.build = 0, True, False, 0
        self.asked = [0] * self.settings.feeds
        self.in_flight_peak = self.in_flight

    def _count_in_flight(self, step: int) -> None:
        now = time.monotonic()
        self.in_flight_seconds += self.in_flight * (now - self._in_flight_since)
        self._in_flight_since = now
        self.in_flight += step
        self.in_flight_peak = max(self.in_flight_peak, self.in_flight)

    def advance(self, fraction: float) -> list[int]:
        """Next epoch: ``fraction`` of the feeds gain ``new_items`` posts; their indexes."""
        self.epoch += 1
        n = self.settings.feeds
        rng = random.Random(f"{self.settings.seed}:{self.epoch}")
        changed = sorted(rng.sample(range(n), round(max(0.0, min(fraction, 1.0)) * n)))
        for i in changed:
            self.heads[i] += self.settings.new_items
            self.bodies[i] = self._render(i)
        return changed

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/feeds/{id}", self.serve_feed)
        app.router.add_post("/_reset", self._reset)
        app.router.add_post("/_epoch", self._epoch)
        app.router.add_post("/_mode", self._mode)
        app.router.add_get("/_stats", self._stats)
        return app

    async def serve_feed(self, request: web.Request) -> web.Response:
        self._count_in_flight(+1)
        try:
            return await self._serve_feed(request)
        finally:
            self._count_in_flight(-1)

    async def _serve_feed(self, request: web.Request) -> web.Response:
        self.stats["requests"] += 1
        try:
            index = int(request.match_info["id"])
            feed = self.bodies[index] if index >= 0 else None
        except (ValueError, IndexError):
            feed = None
        if feed is None:
            self.stats["404"] += 1
            return web.Response(status=404, text="no such feed")
        nth, self.asked[index] = self.asked[index], self.asked[index] + 1
        delay = latency_seconds(self.settings, index, nth)
        if delay:
            await asyncio.sleep(delay)
        headers = {"Content-Type": feed.content_type}
        wants_gzip = self.settings.gzip and "gzip" in request.headers.get("Accept-Encoding", "")
        if self.churn:
            self.build += 1
            now = datetime.now(UTC)
            body = b"".join((feed.prefix, _slot(feed.atom, now, self.build), feed.suffix))
            if self.validators:  # a fresh ETag and date on every request: never a 304
                headers["ETag"] = f'"f{index}-b{self.build}"'
                headers["Last-Modified"] = http_date(now)
            if wants_gzip:
                body = gzip.compress(body, 1)
        else:
            if self.validators:
                headers["ETag"] = feed.etag
                headers["Last-Modified"] = feed.last_modified
                if _not_modified(request, feed):
                    self.stats["304"] += 1
                    del headers["Content-Type"]
                    return web.Response(status=304, headers=headers)
            body = feed.gzipped if wants_gzip and feed.gzipped is not None else feed.body
        if wants_gzip:
            headers["Content-Encoding"] = "gzip"
        self.stats["200"] += 1
        self.stats["bytes"] += len(body)
        return web.Response(body=body, headers=headers)

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"epoch": self.epoch})

    async def _epoch(self, request: web.Request) -> web.Response:
        changed = self.advance(float(request.query.get("fraction", "0.1")))
        return web.json_response({"epoch": self.epoch, "changed": len(changed)})

    async def _mode(self, request: web.Request) -> web.Response:
        if "validators" in request.query:
            self.validators = request.query["validators"] not in ("0", "false", "off")
        if "churn" in request.query:
            self.churn = request.query["churn"] not in ("0", "false", "off")
        return web.json_response({"validators": self.validators, "churn": self.churn})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                **self.stats,
                "epoch": self.epoch,
                "validators": self.validators,
                "churn": self.churn,
                "cpu_seconds": round(time.process_time(), 3),
                "in_flight": self.in_flight,
                "in_flight_peak": self.in_flight_peak,
                "in_flight_seconds": round(self._in_flight_integral(), 3),
            }
        )

    def _in_flight_integral(self) -> float:
        return self.in_flight_seconds + self.in_flight * (time.monotonic() - self._in_flight_since)


def _not_modified(request: web.Request, feed: Rendered) -> bool:
    """RFC 9110: If-None-Match wins over If-Modified-Since."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        tags = {tag.strip().removeprefix("W/") for tag in inm.split(",")}
        return "*" in tags or feed.etag in tags
    ims = request.headers.get("If-Modified-Since")
    if ims is None:
        return False
    try:
        since = parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False
    return parsedate_to_datetime(feed.last_modified) <= since


async def serve(
    settings: FarmSettings, port: int, ready: asyncio.Future[int] | None = None
) -> None:
    """Serve the farm on 127.0.0.1..127.0.0.<hosts> until cancelled (or SIGINT/SIGTERM)."""
    farm = Farm(settings)
    runner = web.AppRunner(farm.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        first = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
        await first.start()
        port = next(addr[1] for addr in runner.addresses if isinstance(addr, tuple))
        for host in range(2, settings.hosts + 1):
            await web.TCPSite(runner, f"127.0.0.{host}", port, backlog=1024).start()
        print(
            json.dumps(
                {
                    "ready": True,
                    "port": port,
                    "feeds": settings.feeds,
                    "hosts": settings.hosts,
                    "items": settings.items,
                    "latency_median_ms": settings.latency_median_ms,
                    "latency_sigma": settings.latency_sigma,
                    "render_seconds": round(farm.render_seconds, 2),
                    "bytes_total": sum(len(b.body) for b in farm.bodies),
                    "example": feed_url(0, settings.hosts, port),
                }
            ),
            flush=True,
        )
        if ready is not None:
            ready.set_result(port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--items", type=int, default=50, help="posts per feed")
    parser.add_argument("--hosts", type=int, default=50, help=f"loopback addresses, 1..{MAX_HOSTS}")
    parser.add_argument("--port", type=int, default=8765, help="0: any free port")
    parser.add_argument("--new-items", type=int, default=5, help="posts a changed feed gains")
    parser.add_argument("--gzip", action="store_true", help="gzip bodies (pre-compressed)")
    parser.add_argument("--seed", type=int, default=1, help="changed feeds, latency draws")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="median response delay (0: none)"
    )
    parser.add_argument("--latency-sigma", type=float, default=1.0, help="lognormal sigma")
    parser.add_argument("--latency-max-ms", type=float, default=10_000.0, help="delay cap")
    args = parser.parse_args(argv)
    settings = FarmSettings(
        feeds=args.feeds,
        items=args.items,
        hosts=args.hosts,
        new_items=args.new_items,
        gzip=args.gzip,
        seed=args.seed,
        latency_median_ms=args.latency_ms,
        latency_sigma=args.latency_sigma,
        latency_max_ms=args.latency_max_ms,
    )
    asyncio.run(serve(settings, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
