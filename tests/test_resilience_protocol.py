"""Hostile protocol: redirect games, resets, TLS, refused ports, odd statuses, 500 storms.

Most cases share one ``rssd run --once`` (in-process) with good feeds beside them; what
rssd does *next* (Retry-After, 410, backoff) is checked through the scheduler's own
functions fed by what the run recorded.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiohttp import web

from rssd.daemon.history import history_of
from rssd.daemon.pipeline import Pipeline
from rssd.daemon.schedule import BACKOFF_JITTER, Hints, Policy, next_due
from rssd.daemon.startup import daemon_session
from rssd.fetch.fetcher import Fetcher
from rssd.fetch.parse import ParseOutcome, ParsePool
from rssd.models.dto import ErrorCode
from rssd.repo.jobs import latest_jobs
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer, rss
from tests.support.config import make_config
from tests.support.resilience import (
    GOOD_ITEMS,
    RawServer,
    RunResult,
    good_feed,
    refused_port,
    reset,
    response_head,
    run_feeds,
)


def redirect(to: str, status: int = 302) -> web.Response:
    return web.Response(status=status, headers={"Location": to})


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[str]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate, serving a valid feed."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    await asyncio.to_thread(
        subprocess.run,
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application()
    body = rss([{"title": "secret", "guid": "urn:tls"}])

    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/rss+xml")

    app.router.add_get("/feed", serve)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = next(addr[1] for addr in runner.addresses if isinstance(addr, tuple))
    try:
        yield f"https://127.0.0.1:{port}/feed"
    finally:
        await runner.cleanup()


async def test_protocol_failures_are_recorded_and_the_rest_is_fetched(
    feed_server: FeedServer, tmp_path: Path, tls_server: str
) -> None:
    s = feed_server
    feed = rss([{"title": f"moved {i}", "guid": f"urn:moved:{i}"} for i in range(GOOD_ITEMS)])
    s.static("/chain/end", feed)

    async def chain(request: web.Request) -> web.StreamResponse:
        step = int(request.query["step"])
        length = int(request.query["of"])
        if step + 1 >= length:
            return redirect(s.url("/chain/end"), 301)
        return redirect(f"/chain?step={step + 1}&of={length}", 301)

    s.route("/chain", chain)
    raw = RawServer()
    await raw.start()

    async def reset_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = feed.encode()
        writer.write(response_head(Content_Type="application/rss+xml", Content_Length=len(body)))
        writer.write(body[: len(body) // 2])
        await writer.drain()
        await asyncio.sleep(0.05)
        reset(writer)

    async def reset_before_answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        reset(writer)

    async def close_without_answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.close()

    async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()

    cases: dict[str, tuple[str, str, int | None]] = {
        # case: (url, error_code, http_status)
        "redirect loop": (
            s.route("/loop-a", lambda _: _redirect("/loop-b")),
            "too_many_redirects",
            302,
        ),
        "redirect to itself": (
            s.route("/self", lambda _: _redirect("/self")),
            "too_many_redirects",
            302,
        ),
        "301 chain longer than max_redirects": (
            s.url("/chain?step=0&of=8"),
            "too_many_redirects",
            301,
        ),
        "redirect to ftp:": (
            s.route("/to-ftp", lambda _: _redirect("ftp://127.0.0.1/feed.xml")),
            "http_error",
            None,
        ),
        "redirect to file:": (
            s.route("/to-file", lambda _: _redirect("file:///etc/passwd")),
            "http_error",
            None,
        ),
        "redirect to javascript:": (
            s.route("/to-js", lambda _: _redirect("javascript:alert(1)")),
            "http_error",
            None,
        ),
        "redirect without Location": (
            s.route("/no-location", lambda _: _status(302)),
            "http_error",
            302,
        ),
        "connection reset mid-body": (raw.route("/reset-body", reset_mid_body), "connection", None),
        "connection reset before answering": (
            raw.route("/reset-early", reset_before_answer),
            "connection",
            None,
        ),
        "closed without answering": (
            raw.route("/close", close_without_answer),
            "connection",
            None,
        ),
        "refused port": (f"http://127.0.0.1:{refused_port()}/feed", "connection", None),
        "self-signed TLS": (tls_server, "tls", None),
        "https to a plain-HTTP port": (
            s.url("/good-plain").replace("http://", "https://"),
            "tls",
            None,
        ),
        "empty 200": (s.route("/empty", lambda _: _status(200)), "not_a_feed", 200),
        "204 No Content": (s.route("/204", lambda _: _status(204)), "not_a_feed", 204),
        "404": (s.route("/404", lambda _: _status(404)), "http_error", 404),
        "410": (s.route("/410", lambda _: _status(410)), "gone", 410),
        "429 with Retry-After": (
            s.route("/429", lambda _: _status(429, {"Retry-After": "3600"})),
            "rate_limited",
            429,
        ),
        "503 with Retry-After": (
            s.route("/503", lambda _: _status(503, {"Retry-After": "120"})),
            "http_error",
            503,
        ),
    }
    s.route("/loop-b", lambda _: _redirect("/loop-a"))
    not_http_url = raw.route("/ssh", not_http)
    unasked_304 = s.route("/304", lambda _: _status(304))
    chain_ok = s.url("/chain?step=0&of=3")
    s.static("/good-plain", feed)
    good = [good_feed(s, f"/good{i}") for i in range(3)]
    urls = [url for url, _, _ in cases.values()]
    try:
        result = await run_feeds(
            tmp_path,
            [*urls, not_http_url, unasked_304, chain_ok, *good],
            timeout_seconds=10,
            max_per_host=50,
        )
    finally:
        await raw.stop()
    recorded = {
        case: (result.job(url).error_code, result.job(url).http_status)
        for case, (url, _, _) in cases.items()
    }
    assert recorded == {case: (code, status) for case, (_, code, status) in cases.items()}
    for url, code, _ in cases.values():
        result.assert_failed(url, code)
    for case in ("redirect to ftp:", "redirect to file:", "redirect to javascript:"):
        assert "non-http(s)" in (result.job(cases[case][0]).error_message or ""), case
    # A byte stream that is not HTTP at all: refused, saying why.
    job = result.job(not_http_url)
    assert job.error_code in ("connection", "http_error"), job
    result.assert_failed(not_http_url, job.error_code or "")
    # A 304 to a request that was not conditional: nothing to store, nothing broken.
    job = result.assert_completed(unasked_304, 0)
    assert (job.http_status, job.posts_count) == (304, 0)
    # A 301 chain within max_redirects is followed to the feed.
    done = result.assert_completed(chain_ok, GOOD_ITEMS)
    assert done.final_url == s.url("/chain/end")
    result.assert_good(*good)
    _assert_no_local_file_leaked(result)


def _redirect(to: str) -> asyncio.Future[web.StreamResponse]:
    return _now(redirect(to))


def _status(
    status: int, headers: dict[str, str] | None = None
) -> asyncio.Future[web.StreamResponse]:
    return _now(web.Response(status=status, headers=headers))


def _now(response: web.StreamResponse) -> asyncio.Future[web.StreamResponse]:
    future: asyncio.Future[web.StreamResponse] = asyncio.get_running_loop().create_future()
    future.set_result(response)
    return future


def _assert_no_local_file_leaked(result: RunResult) -> None:
    passwd = Path("/etc/passwd").read_text().splitlines()[0]
    for posts in result.posts.values():
        for post in posts:
            assert all(passwd not in text for text in post.texts()), post


async def test_a_500_storm_does_not_stop_the_good_feeds(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """60 feeds answering 500 (some slowly) at once, 5 good ones among them, default limits."""

    async def error(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.05 * (hash(request.path) % 4))
        return web.Response(status=500, text="Internal Server Error")

    storm = [feed_server.route(f"/500/{i}", error) for i in range(60)]
    good = [good_feed(feed_server, f"/good{i}") for i in range(5)]
    result = await run_feeds(tmp_path, [*storm[:30], *good, *storm[30:]])
    for url in storm:
        result.assert_failed(url, "http_error", http_status=500)
    result.assert_good(*good)
    assert result.summary is not None
    assert (result.summary.completed, result.summary.failed) == (5, 60)


class _NoParse(ParsePool):
    """A parse pool that is never needed: these fetches fail before any parse. A parse
    asked of it is recorded (the test asserts there was none) and answered with an error:
    raising would be caught by the pipeline's own catch-all and could not fail the test."""

    def __init__(self) -> None:
        self.workers = 0
        self.timeout = 1.0
        self.asked: list[str] = []

    async def start(self) -> None:
        return None

    def start_soon(self) -> None:
        return None

    async def parse(
        self,
        body: bytes,
        url: str,
        content_type: str | None,
        *,
        sanitize: bool,
        seen: bytes = b"",
    ) -> ParseOutcome:
        self.asked.append(url)
        return ParseOutcome(error_code=ErrorCode.PARSE_ERROR, message="no parse expected")

    def close(self) -> None:
        return None


async def test_what_rssd_does_next_after_429_503_410_and_500(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """Retry-After (seconds or a date) pushes the next fetch back; 410 stops fetching the
    feed until its config entry changes; repeated 500s back off exponentially."""
    later = datetime.now(UTC) + timedelta(hours=3)
    urls = {
        "429 seconds": feed_server.route("/429", lambda _: _status(429, {"Retry-After": "7200"})),
        "503 date": feed_server.route(
            "/503", lambda _: _status(503, {"Retry-After": format_datetime(later, usegmt=True)})
        ),
        "410": feed_server.route("/410", lambda _: _status(410)),
        "500": feed_server.route("/500", lambda _: _status(500)),
    }
    config = make_config(tmp_path, list(urls.values()), interval_minutes=30)
    policy = Policy(interval=timedelta(minutes=30))
    async with asyncio.timeout(240), daemon_session(config) as db:  # a hang guard
        sources = {s.url: s for s in await SourceRepo(db).list()}
        no_parse = _NoParse()
        async with Fetcher(config, parse_pool=no_parse) as fetcher:
            pipeline = Pipeline(db, fetcher)
            reports = {case: await pipeline.run(sources[url]) for case, url in urls.items()}
            for _ in range(3):  # the 500 feed fails three more times in a row
                await pipeline.run(sources[urls["500"]])
        latest = {row.source_id: row for row in await latest_jobs(db)}
    assert no_parse.asked == []

    def due(case: str) -> datetime | None:
        report = reports[case]
        assert report.result is not None
        hints = Hints(http_status=report.http_status, headers=dict(report.result.hints))
        history = history_of(latest[report.source_id])
        return next_due(history, policy, now, 0.5, hints)  # 0.5: the middle of +-10%

    now = datetime.now(UTC)
    ended = {case: history_of(latest[reports[case].source_id]).ended_at for case in urls}
    assert due("429 seconds") == _plus(ended["429 seconds"], timedelta(hours=2))
    wait_503 = _minus(due("503 date"), ended["503 date"])
    assert timedelta(hours=2, minutes=59) < wait_503 <= timedelta(hours=3)
    assert due("410") is None  # not fetched again until its config entry changes
    assert latest[reports["500"].source_id].failures == 4
    # 2 ** (4 - 1) intervals, a backoff's jitter taking up to BACKOFF_JITTER of it (at 0.5,
    # half that)
    backed_off = timedelta(minutes=30) * 8 * (1 - BACKOFF_JITTER * 0.5)
    assert _minus(due("500"), ended["500"]) == backed_off


def _plus(moment: datetime | None, delta: timedelta) -> datetime:
    assert moment is not None
    return moment + delta


def _minus(later: datetime | None, earlier: datetime | None) -> timedelta:
    assert later is not None and earlier is not None
    return later - earlier
