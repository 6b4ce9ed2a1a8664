"""rssd.fetch.http.get against real loopback servers: every outcome and its error_code.

The servers are real: FeedServer (aiohttp on 127.0.0.1), raw asyncio TCP servers for peers
that misbehave below HTTP (never answer, lie about Content-Length, reset the connection),
and an HTTPS aiohttp server with a certificate made by ``openssl`` at test time.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import struct
import subprocess
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from rssd.fetch.digest import content_digest
from rssd.fetch.http import FetchError, HttpResponse, RequestLimits, get, hints
from rssd.fetch.inflate import Inflater
from rssd.models.dto import ErrorCode
from tests.conftest import FeedServer, rss

LIMITS = RequestLimits(timeout=10.0, max_bytes=1_000_000, max_redirects=5)
FEED = rss([{"guid": "1", "title": "one"}, {"guid": "2", "title": "two"}]).encode()

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # As Fetcher does: rssd inflates bodies itself, under its cap.
    async with aiohttp.ClientSession(auto_decompress=False) as client:
        yield client


async def fetch_error(
    session: aiohttp.ClientSession,
    url: str,
    limits: RequestLimits = LIMITS,
    *,
    etag: str | None = None,
) -> FetchError:
    with pytest.raises(FetchError) as info:
        await get(session, url, limits, etag=etag)
    return info.value


def limits(**changes: float) -> RequestLimits:
    values: dict[str, float] = {
        "timeout": LIMITS.timeout,
        "max_bytes": LIMITS.max_bytes,
        "max_redirects": LIMITS.max_redirects,
    }
    values.update(changes)
    return RequestLimits(
        timeout=values["timeout"],
        max_bytes=int(values["max_bytes"]),
        max_redirects=int(values["max_redirects"]),
    )


@asynccontextmanager
async def raw_server(handler: RawHandler) -> AsyncIterator[str]:
    """A bare TCP server on 127.0.0.1 speaking whatever ``handler`` writes; yields its URL."""
    tasks: set[asyncio.Task[None]] = set()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/feed"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@asynccontextmanager
async def serve_app(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """Run ``app`` on 127.0.0.1 (optionally over TLS); yields the port."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


# --- 200, validators, conditional GET -------------------------------------------------


async def test_200_body_and_metadata(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    url = feed_server.static(
        "/feed",
        FEED,
        headers={"ETag": '"v1"', "Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"},
    )
    response = await get(session, url, LIMITS)
    assert response == HttpResponse(
        status=200,
        final_url=url,
        etag='"v1"',
        last_modified="Wed, 21 Oct 2015 07:28:00 GMT",
        content_type="application/rss+xml",
        body=FEED,
        content_hash=content_digest(FEED),
        size=len(FEED),
        moved_permanently=False,
        hints={},
    )
    assert not response.not_modified


async def test_request_headers_without_validators(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    url = feed_server.static("/feed", FEED)
    await get(session, url, LIMITS, user_agent="rssd-test/1")
    sent = feed_server.requests[-1].headers
    assert sent["User-Agent"] == "rssd-test/1"
    assert "If-None-Match" not in sent
    assert "If-Modified-Since" not in sent
    assert sent["Accept-Encoding"] == "gzip, deflate"
    assert "application/rss+xml" in sent["Accept"]


async def test_conditional_get_sends_validators_and_304_is_not_modified(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    seen: list[tuple[str | None, str | None]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(
            (request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since"))
        )
        return web.Response(status=304, headers={"ETag": '"v2"', "Cache-Control": "max-age=600"})

    url = feed_server.route("/feed", handler)
    response = await get(
        session, url, LIMITS, etag='"v1"', last_modified="Wed, 21 Oct 2015 07:28:00 GMT"
    )
    assert seen == [('"v1"', "Wed, 21 Oct 2015 07:28:00 GMT")]
    assert response.not_modified
    assert response.status == 304
    assert response.etag == '"v2"'
    assert response.body == b""
    assert response.content_hash is None
    assert response.final_url == url
    assert response.hints == {"Cache-Control": "max-age=600"}


async def test_304_through_static_etag(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    url = feed_server.static("/feed", FEED, headers={"ETag": '"abc"'})
    first = await get(session, url, LIMITS)
    second = await get(session, url, LIMITS, etag=first.etag)
    assert (first.status, second.status) == (200, 304)
    assert second.not_modified


# --- content encodings ----------------------------------------------------------------


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),  # RFC 9110 deflate: zlib-wrapped
        ("identity", lambda data: data),
    ],
)
async def test_compressed_body_is_inflated(
    feed_server: FeedServer,
    session: aiohttp.ClientSession,
    encoding: str,
    encode: Callable[[bytes], bytes],
) -> None:
    big = rss([{"guid": str(i), "title": f"post {i}"} for i in range(200)]).encode()
    url = feed_server.static("/feed", encode(big), headers={"Content-Encoding": encoding})
    response = await get(session, url, LIMITS)
    assert response.body == big
    assert response.size == len(big)  # counted after decompression
    assert response.content_hash == content_digest(big)


DEFLATE_DIALECTS = [
    pytest.param(zlib.compress, id="zlib"),
    pytest.param(_raw_deflate, id="raw"),  # headerless, as old IIS and some PHP send it
    pytest.param(gzip.compress, id="gzip"),  # mislabelled gzip
]


@pytest.mark.parametrize("encode", DEFLATE_DIALECTS)
async def test_every_deflate_dialect_is_inflated(
    feed_server: FeedServer, session: aiohttp.ClientSession, encode: Callable[[bytes], bytes]
) -> None:
    url = feed_server.static("/feed", encode(FEED), headers={"Content-Encoding": "deflate"})
    response = await get(session, url, LIMITS)
    assert response.body == FEED


@pytest.mark.parametrize("encode", DEFLATE_DIALECTS)
@pytest.mark.parametrize("first", [1, 2, 3])
def test_deflate_dialect_survives_a_short_first_chunk(
    encode: Callable[[bytes], bytes], first: int
) -> None:
    """The dialect is told from the first two bytes: a first chunk shorter than that (as a
    server writing a lone byte first sends) is held back until it can be. Chunk sizes are
    the network's choice, so they are fed to the Inflater directly rather than hoped for
    from a loopback socket."""
    data = encode(FEED)
    inflater = Inflater("deflate")
    out = b"".join(inflater.feed(data[:first], 1 << 20))
    out += b"".join(inflater.feed(data[first:], 1 << 20)) + inflater.finish()
    assert out == FEED


@pytest.mark.parametrize("encode", DEFLATE_DIALECTS)
def test_deflate_dialect_survives_byte_by_byte_chunks(encode: Callable[[bytes], bytes]) -> None:
    data = encode(FEED)
    inflater = Inflater("deflate")
    out = b"".join(piece for byte in data for piece in inflater.feed(bytes([byte]), 1 << 20))
    assert out + inflater.finish() == FEED


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"this is not gzip at all"),
        ("deflate", b"\xff\xfe not deflate"),
        ("br", b"brotli is not asked for"),
    ],
)
async def test_bad_or_unsupported_encoding_is_http_error(
    feed_server: FeedServer, session: aiohttp.ClientSession, encoding: str, body: bytes
) -> None:
    url = feed_server.static("/feed", body, headers={"Content-Encoding": encoding})
    error = await fetch_error(session, url)
    assert error.code is ErrorCode.HTTP_ERROR
    assert error.http_status == 200


async def test_truncated_gzip_stream_is_an_error(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    compressed = gzip.compress(rss([{"guid": str(i)} for i in range(500)]).encode())
    url = feed_server.static(
        "/feed", compressed[: len(compressed) // 2], headers={"Content-Encoding": "gzip"}
    )
    error = await fetch_error(session, url)
    assert error.code is ErrorCode.HTTP_ERROR


# --- size cap -------------------------------------------------------------------------

BOMB_INFLATED = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """~64 KB of gzip that inflates to 64 MiB of zeros, built chunk by chunk."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    parts = [compressor.compress(zeros) for _ in range(BOMB_INFLATED // len(zeros))]
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_gzip_bomb_is_too_large_without_inflating_it(
    feed_server: FeedServer,
    session: aiohttp.ClientSession,
    gzip_bomb: bytes,
    encoding: str,
) -> None:
    # "deflate" is decoded with zlib's auto-detection, which also takes a gzip header.
    assert len(gzip_bomb) * 500 < BOMB_INFLATED
    url = feed_server.static("/bomb", gzip_bomb, headers={"Content-Encoding": encoding})
    cap = 256 * 1024
    tracemalloc.start()
    try:
        error = await fetch_error(session, url, limits(max_bytes=cap))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.code is ErrorCode.TOO_LARGE
    assert error.http_status == 200
    assert str(cap) in error.message
    # The bomb never fully expands: memory stays a small multiple of the cap.
    assert peak < 16 * 1024 * 1024


async def test_body_exactly_at_the_cap_is_accepted(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    body = b"x" * 5000
    plain = feed_server.static("/plain", body)
    zipped = feed_server.static(
        "/zipped", gzip.compress(body), headers={"Content-Encoding": "gzip"}
    )
    for url in (plain, zipped):
        assert (await get(session, url, limits(max_bytes=5000))).size == 5000
        assert (await fetch_error(session, url, limits(max_bytes=4999))).code is ErrorCode.TOO_LARGE


async def test_endless_chunked_body_is_too_large(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    written = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal written
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        chunk = b"<item>" + b"x" * 65536 + b"</item>"
        try:
            while written < 512 * 1024 * 1024:  # a safety stop; the client quits long before
                await response.write(chunk)
                written += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: that is the point
        return response

    url = feed_server.route("/endless", endless)
    error = await fetch_error(session, url, limits(max_bytes=1_000_000))
    assert error.code is ErrorCode.TOO_LARGE
    assert written < 512 * 1024 * 1024


async def test_declared_content_length_over_the_cap_is_too_large(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    url = feed_server.static("/big", b"x" * 2_000_001)
    error = await fetch_error(session, url, limits(max_bytes=2_000_000))
    assert error.code is ErrorCode.TOO_LARGE
    assert error.http_status == 200
    assert error.final_url == url


# --- timeouts -------------------------------------------------------------------------


async def test_trickling_server_is_timeout(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        response.content_length = 100_000
        await response.prepare(request)
        try:
            for _ in range(100):  # at most 20 s; the client gives up after 0.5 s
                await response.write(b"<")
                await asyncio.sleep(0.2)
        except (ConnectionError, RuntimeError):
            pass
        return response

    url = feed_server.route("/trickle", trickle)
    error = await fetch_error(session, url, limits(timeout=0.5))
    assert error.code is ErrorCode.TIMEOUT
    assert "0.5" in error.message


async def test_server_that_never_answers_is_timeout(session: aiohttp.ClientSession) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes

    async with raw_server(silent) as url:
        error = await fetch_error(session, url, limits(timeout=0.5))
    assert error.code is ErrorCode.TIMEOUT


async def test_handler_that_never_responds_is_timeout(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response(text="too late")

    url = feed_server.route("/hang", hang)
    error = await fetch_error(session, url, limits(timeout=0.5))
    assert error.code is ErrorCode.TIMEOUT


# --- redirects ------------------------------------------------------------------------


def redirect_chain(server: FeedServer, statuses: list[int]) -> tuple[str, str]:
    """/r0 -> /r1 -> ... -> /final with the given statuses; returns (start, final) URLs."""
    final = server.static("/final", FEED)
    for index, status in enumerate(statuses):
        target = f"/r{index + 1}" if index + 1 < len(statuses) else "/final"

        async def hop(
            request: web.Request, status: int = status, target: str = target
        ) -> web.StreamResponse:
            return web.Response(status=status, headers={"Location": target})

        server.route(f"/r{index}", hop)
    return (server.url("/r0") if statuses else final), final


@pytest.mark.parametrize(
    ("statuses", "moved"),
    [
        ([], False),
        ([301], True),
        ([308], True),
        ([301, 308, 301], True),
        ([302], False),
        ([303], False),
        ([307], False),
        ([301, 302], False),
        ([302, 301], False),
    ],
)
async def test_redirects_are_followed(
    feed_server: FeedServer,
    session: aiohttp.ClientSession,
    statuses: list[int],
    moved: bool,
) -> None:
    start, final = redirect_chain(feed_server, statuses)
    response = await get(session, start, LIMITS)
    assert response.status == 200
    assert response.body == FEED
    assert response.final_url == final
    assert response.moved_permanently is moved


async def test_redirect_limit_is_inclusive(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    start, final = redirect_chain(feed_server, [302] * 3)
    assert (await get(session, start, limits(max_redirects=3))).final_url == final
    error = await fetch_error(session, start, limits(max_redirects=2))
    assert error.code is ErrorCode.TOO_MANY_REDIRECTS


async def test_redirect_loop_is_too_many_redirects(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    async def to_b(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "/b"})

    async def to_a(request: web.Request) -> web.StreamResponse:
        return web.Response(status=301, headers={"Location": feed_server.url("/a")})

    url = feed_server.route("/a", to_b)
    feed_server.route("/b", to_a)
    error = await fetch_error(session, url)
    assert error.code is ErrorCode.TOO_MANY_REDIRECTS
    assert feed_server.hits["/a"] + feed_server.hits["/b"] == LIMITS.max_redirects + 1


@pytest.mark.parametrize(
    "location", ["ftp://127.0.0.1/feed.xml", "file:///etc/passwd", "javascript:alert(1)"]
)
async def test_redirect_to_a_non_http_scheme_is_http_error(
    feed_server: FeedServer, session: aiohttp.ClientSession, location: str
) -> None:
    async def away(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": location})

    error = await fetch_error(session, feed_server.route("/feed", away))
    assert error.code is ErrorCode.HTTP_ERROR
    assert "non-http" in error.message


async def test_redirect_without_location_is_http_error(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    url = feed_server.static("/feed", b"", status=302)
    error = await fetch_error(session, url)
    assert error.code is ErrorCode.HTTP_ERROR
    assert error.http_status == 302


async def test_redirect_to_a_malformed_url_is_http_error(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    async def broken(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "http://[::1/feed"})

    error = await fetch_error(session, feed_server.route("/feed", broken))
    assert error.code is ErrorCode.HTTP_ERROR


async def test_304_after_a_permanent_redirect(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        return web.Response(status=301, headers={"Location": "/new"})

    url = feed_server.route("/old", moved)
    new = feed_server.static("/new", FEED, headers={"ETag": '"e"'})
    response = await get(session, url, LIMITS, etag='"e"')
    assert response.not_modified
    assert response.final_url == new
    assert response.moved_permanently


# --- HTTP status codes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "code"),
    [
        (404, {}, ErrorCode.HTTP_ERROR),
        (500, {}, ErrorCode.HTTP_ERROR),
        (403, {}, ErrorCode.HTTP_ERROR),
        (410, {}, ErrorCode.GONE),
        (429, {"Retry-After": "120"}, ErrorCode.RATE_LIMITED),
        (503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, ErrorCode.HTTP_ERROR),
    ],
)
async def test_error_statuses(
    feed_server: FeedServer,
    session: aiohttp.ClientSession,
    status: int,
    headers: dict[str, str],
    code: ErrorCode,
) -> None:
    url = feed_server.static(
        "/feed",
        b"nope",
        status=status,
        headers={**headers, "X-Other": "not a hint"},
        content_type="text/plain",
    )
    error = await fetch_error(session, url)
    assert error.code is code
    assert error.http_status == status
    assert error.final_url == url
    assert str(status) in error.message
    assert hints(error.headers) == headers  # Retry-After kept for the scheduler, no more


async def test_hints_keep_only_scheduling_headers(
    feed_server: FeedServer, session: aiohttp.ClientSession
) -> None:
    url = feed_server.static(
        "/feed",
        FEED,
        headers={
            "Cache-Control": "max-age=3600",
            "Expires": "Thu, 01 Dec 2094 16:00:00 GMT",
            "Server": "test",
        },
    )
    response = await get(session, url, LIMITS)
    assert response.hints == {
        "Cache-Control": "max-age=3600",
        "Expires": "Thu, 01 Dec 2094 16:00:00 GMT",
    }


# --- network failures -----------------------------------------------------------------


def closed_port() -> int:
    """A port that was just free on 127.0.0.1 and has no listener now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_refused_connection_is_connection(session: aiohttp.ClientSession) -> None:
    error = await fetch_error(session, f"http://127.0.0.1:{closed_port()}/feed")
    assert error.code is ErrorCode.CONNECTION


async def test_unresolvable_host_is_dns(session: aiohttp.ClientSession) -> None:
    error = await fetch_error(session, "http://nonexistent.invalid/")
    assert error.code is ErrorCode.DNS


async def test_content_length_that_lies_is_connection(session: aiohttp.ClientSession) -> None:
    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
            b"Content-Length: 100000\r\n\r\n" + FEED
        )
        await writer.drain()  # then a clean close, 100,000 - len(FEED) bytes short

    async with raw_server(liar) as url:
        error = await fetch_error(session, url)
    assert error.code is ErrorCode.CONNECTION


async def test_connection_reset_mid_body_is_connection(session: aiohttp.ClientSession) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"1000\r\n" + b"x" * 0x1000 + b"\r\n"
        )
        await writer.drain()
        sock = writer.get_extra_info("socket")
        # SO_LINGER 0: close() sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async with raw_server(reset) as url:
        error = await fetch_error(session, url)
    assert error.code is ErrorCode.CONNECTION


async def test_garbage_instead_of_http_is_an_error_code(session: aiohttp.ClientSession) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    async with raw_server(garbage) as url:
        error = await fetch_error(session, url)
    assert error.code in (ErrorCode.CONNECTION, ErrorCode.HTTP_ERROR)


# --- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl CLI (and the `cryptography` package is not installed)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    result = subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        capture_output=True,
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {result.stderr.decode()[-300:]}")
    return cert, key


@asynccontextmanager
async def https_feed(cert: Path, key: Path) -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=FEED, content_type="application/rss+xml")

    app = web.Application()
    app.router.add_get("/feed", handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    async with serve_app(app, context) as port:
        yield f"https://127.0.0.1:{port}/feed"


async def test_untrusted_certificate_is_tls(
    session: aiohttp.ClientSession, self_signed: tuple[Path, Path]
) -> None:
    async with https_feed(*self_signed) as url:
        error = await fetch_error(session, url)
    assert error.code is ErrorCode.TLS


async def test_https_with_a_trusted_certificate_works(self_signed: tuple[Path, Path]) -> None:
    cert, _ = self_signed
    trust = ssl.create_default_context(cafile=str(cert))
    async with (
        https_feed(*self_signed) as url,
        aiohttp.ClientSession(
            auto_decompress=False, connector=aiohttp.TCPConnector(ssl=trust)
        ) as client,
    ):
        response = await get(client, url, LIMITS)
    assert response.body == FEED
    assert response.final_url == url


async def test_plain_http_to_a_tls_port_is_an_error_code(
    session: aiohttp.ClientSession, self_signed: tuple[Path, Path]
) -> None:
    async with https_feed(*self_signed) as url:
        error = await fetch_error(session, url.replace("https://", "http://"))
    assert error.code in (ErrorCode.CONNECTION, ErrorCode.HTTP_ERROR)
