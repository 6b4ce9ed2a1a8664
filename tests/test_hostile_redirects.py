"""Issue 14.6: a public server may not redirect rssd into a private network.

Before: a feed that 301'd to ``http://127.0.0.1:18080/internal-secret`` was followed, and
the internal page came back through error_message ("links to a feed at
SECRET-TOKEN-abc123").

The decision is a pure function (rssd.net.addresses), tested table-driven. End to end,
every server of a test machine is on loopback, so a "public" server has to be simulated:
the test serves the hostile feed from 127.0.0.2 and gives the Fetcher a classification
that calls exactly that address global, and every other address what rssd.net.addresses
says (127.0.0.1 stays loopback). Everything else is the production path: the real
Fetcher and Pipeline, real sockets, the address really connected to read from the
connection, a hostname target resolved by the real resolver, a real SQLite file.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sqlite3
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from rssd.daemon.pipeline import Pipeline
from rssd.fetch.fetcher import Fetcher
from rssd.fetch.http import FetchError, RequestLimits, get
from rssd.models.config import config_of
from rssd.models.dto import FetchJobStatus
from rssd.net.addresses import (
    AddressClass,
    IPAddress,
    address_class,
    crossing,
    is_global,
    parse_address,
)
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.conftest import FIXTURES, FeedServer, rss
from tests.support.loopback import serve
from tests.test_fetch_http import self_signed, serve_app

__all__ = ["self_signed"]  # a fixture, used by name

A = AddressClass
SECRET_PAGE = (
    b'<html><head><link rel="alternate" type="application/rss+xml" '
    b'href="http://internal.example/SECRET-TOKEN-abc123"></head><body>internal</body></html>'
)
PUBLIC_HOST = "127.0.0.2"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("8.8.8.8", A.GLOBAL),
        ("93.184.215.14", A.GLOBAL),
        ("2606:4700::6810:84e5", A.GLOBAL),
        ("127.0.0.1", A.LOOPBACK),
        ("127.255.255.254", A.LOOPBACK),
        ("::1", A.LOOPBACK),
        ("10.1.2.3", A.PRIVATE),
        ("172.16.0.1", A.PRIVATE),
        ("172.31.255.255", A.PRIVATE),
        ("172.32.0.1", A.GLOBAL),
        ("192.168.1.1", A.PRIVATE),
        ("169.254.169.254", A.LINK_LOCAL),  # cloud metadata
        ("fe80::1", A.LINK_LOCAL),
        ("fe80::1%eth0", A.LINK_LOCAL),
        ("100.64.0.1", A.SHARED),  # carrier-grade NAT
        ("100.127.255.254", A.SHARED),
        ("100.128.0.1", A.GLOBAL),
        ("fc00::1", A.UNIQUE_LOCAL),
        ("fd12:3456::1", A.UNIQUE_LOCAL),
        ("fec0::1", A.UNIQUE_LOCAL),
        ("0.0.0.0", A.UNSPECIFIED),
        ("0.1.2.3", A.UNSPECIFIED),
        ("::", A.UNSPECIFIED),
        ("224.0.0.1", A.MULTICAST),
        ("ff02::1", A.MULTICAST),
        ("255.255.255.255", A.RESERVED),
        ("192.0.2.1", A.RESERVED),
        ("192.0.0.8", A.RESERVED),
        ("198.18.0.1", A.RESERVED),
        ("2001:db8::1", A.RESERVED),
        ("2001::1", A.RESERVED),  # Teredo
        # IPv6 forms carrying an IPv4 address are judged by that address:
        ("::ffff:127.0.0.1", A.LOOPBACK),  # mapped
        ("::ffff:169.254.169.254", A.LINK_LOCAL),
        ("::ffff:8.8.8.8", A.GLOBAL),
        ("::7f00:1", A.LOOPBACK),  # IPv4-compatible (3.11's is_global says global)
        ("64:ff9b::7f00:1", A.LOOPBACK),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", A.LINK_LOCAL),  # NAT64 of 169.254.169.254
        ("64:ff9b::808:808", A.GLOBAL),
        ("64:ff9b:1::1", A.PRIVATE),  # local-use NAT64
        ("2002:7f00:1::", A.LOOPBACK),  # 6to4 of 127.0.0.1
        ("2002:c0a8:101::1", A.PRIVATE),  # 6to4 of 192.168.1.1
    ],
)
def test_address_class_table(address: str, expected: AddressClass) -> None:
    parsed = parse_address(address)
    assert parsed is not None
    assert address_class(parsed) is expected
    assert is_global(parsed) is (expected is A.GLOBAL)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[fe80::1%25eth0]", "fe80::1"),  # a URL's percent-encoded zone id
        ("fe80::1%eth0", "fe80::1"),
        ("example.org", None),
        ("", None),
    ],
)
def test_parse_address(host: str, expected: str | None) -> None:
    parsed = parse_address(host)
    assert (None if parsed is None else str(type(parsed)(int(parsed)))) == expected


@pytest.mark.parametrize(
    ("source", "targets", "allow", "refused"),
    [
        (A.GLOBAL, [A.GLOBAL], False, None),
        (A.GLOBAL, [A.LOOPBACK], False, A.LOOPBACK),
        (A.GLOBAL, [A.GLOBAL, A.LINK_LOCAL], False, A.LINK_LOCAL),  # any address counts
        (A.GLOBAL, [A.SHARED], False, A.SHARED),
        (A.GLOBAL, [A.UNIQUE_LOCAL], False, A.UNIQUE_LOCAL),
        (A.GLOBAL, [A.LOOPBACK], True, None),  # allow_private_networks
        (A.PRIVATE, [A.LOOPBACK], False, None),  # the operator's own network
        (A.LOOPBACK, [A.PRIVATE, A.GLOBAL], False, None),
        (A.GLOBAL, [], False, None),  # unresolvable: the request fails on its own
    ],
)
def test_crossing_table(
    source: AddressClass, targets: list[AddressClass], allow: bool, refused: AddressClass | None
) -> None:
    assert crossing(source, targets, allow_private=allow) is refused


def public_stand_in(address: IPAddress) -> AddressClass:
    """127.0.0.2 plays the public internet; every other address is what it is."""
    if address == ipaddress.ip_address(PUBLIC_HOST):
        return A.GLOBAL
    return address_class(address)


class HostServer(FeedServer):
    """The conftest FeedServer, bound to another loopback address."""

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner, self.port = await serve(app, self.host)


@pytest.fixture
async def public() -> AsyncIterator[HostServer]:
    server = HostServer(PUBLIC_HOST)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def redirect(to: str, status: int = 301) -> web.Response:
    return web.Response(status=status, headers={"Location": to})


async def fetch_stored(
    tmp_path: Path, url: str, *, allow: bool = False, moved_to: str | None = None
) -> tuple[FetchJobStatus, str | None, str | None]:
    """One fetch through the real Pipeline into a real SQLite file: status, error_code,
    error_message as stored (what ``rssd status`` would print)."""
    config = config_of(
        {
            "database": str(tmp_path / "rssd.sqlite3"),
            "feeds": [{"url": url}],
            "allow_private_networks": allow,
        }
    )
    db = await open_database(config.database)
    try:
        await SourceRepo(db).sync(config)
        (source,) = await SourceRepo(db).list()
        async with Fetcher(config, classify=public_stand_in) as fetcher:
            await Pipeline(db, fetcher).run(source, moved_to)
    finally:
        await db.close()
    with contextlib.closing(sqlite3.connect(config.database)) as conn:
        status, code, message = conn.execute(
            "SELECT status, error_code, error_message FROM fetch_job"
        ).fetchone()
    return FetchJobStatus(status), code, message


async def test_a_public_feed_redirecting_to_loopback_is_refused(
    public: HostServer, feed_server: FeedServer, tmp_path: Path
) -> None:
    secret = feed_server.static("/internal-secret", SECRET_PAGE, content_type="text/html")

    async def to_secret(request: web.Request) -> web.StreamResponse:
        return redirect(secret)

    url = public.route("/feed", to_secret)
    status, code, message = await fetch_stored(tmp_path, url)
    assert (status, code) == (FetchJobStatus.FAILED, "http_error")
    assert message is not None and "to a loopback address refused" in message
    assert "SECRET" not in message
    assert feed_server.hits.get("/internal-secret") is None  # never even asked


async def test_the_same_redirect_is_followed_when_private_networks_are_allowed(
    public: HostServer, feed_server: FeedServer, tmp_path: Path
) -> None:
    """The control: the refusal above is the guard, not a broken redirect."""
    secret = feed_server.static("/internal-secret", SECRET_PAGE, content_type="text/html")

    async def to_secret(request: web.Request) -> web.StreamResponse:
        return redirect(secret)

    url = public.route("/feed", to_secret)
    status, _code, message = await fetch_stored(tmp_path, url, allow=True)
    # The private page was read: its feed link (the secret) was followed and is quoted.
    assert status is FetchJobStatus.FAILED
    assert message is not None and "SECRET-TOKEN-abc123" in message
    assert feed_server.hits["/internal-secret"] == 1


async def test_a_hostname_resolving_to_loopback_is_refused_before_connecting(
    public: HostServer, feed_server: FeedServer, tmp_path: Path
) -> None:
    feed_server.static("/internal-secret", SECRET_PAGE, content_type="text/html")

    async def to_localhost(request: web.Request) -> web.StreamResponse:
        return redirect(f"http://localhost:{feed_server.port}/internal-secret", status=302)

    url = public.route("/feed", to_localhost)
    status, _, message = await fetch_stored(tmp_path, url)
    assert status is FetchJobStatus.FAILED
    assert message is not None and "loopback address refused" in message
    assert feed_server.hits.get("/internal-secret") is None


async def test_a_later_hop_into_loopback_is_refused_too(
    public: HostServer, feed_server: FeedServer, tmp_path: Path
) -> None:
    """public -> public -> loopback: the hop that crosses is refused wherever it is."""
    secret = feed_server.static("/internal-secret", SECRET_PAGE, content_type="text/html")

    async def hop(request: web.Request) -> web.StreamResponse:
        return redirect(public.url("/second"))

    async def second(request: web.Request) -> web.StreamResponse:
        return redirect(secret, status=307)

    public.route("/second", second)
    url = public.route("/feed", hop)
    status, _, message = await fetch_stored(tmp_path, url)
    assert status is FetchJobStatus.FAILED
    assert message is not None and "loopback address refused" in message
    assert public.hits["/second"] == 1
    assert feed_server.hits.get("/internal-secret") is None


async def test_a_feed_the_operator_wrote_on_loopback_keeps_working(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """Configured on a private address, redirected within it: the operator's network."""
    target = feed_server.static("/moved", rss([{"guid": "urn:x:1", "title": "x"}]))

    async def moved(request: web.Request) -> web.StreamResponse:
        return redirect(target)

    url = feed_server.route("/feed", moved)
    status, code, _ = await fetch_stored(tmp_path, url)
    assert (status, code) == (FetchJobStatus.COMPLETED, None)


async def test_public_to_public_redirects_still_work(public: HostServer, tmp_path: Path) -> None:
    target = public.static("/moved", (FIXTURES / "hostile" / "bidi-titles.rss").read_bytes())

    async def moved(request: web.Request) -> web.StreamResponse:
        return redirect(target)

    url = public.route("/feed", moved)
    status, code, _ = await fetch_stored(tmp_path, url)
    assert (status, code) == (FetchJobStatus.COMPLETED, None)


async def test_a_moved_url_learned_from_a_public_server_is_checked_too(
    public: HostServer, feed_server: FeedServer, tmp_path: Path
) -> None:
    """After repeated 301s the daemon fetches the new location directly: that URL came
    from the publisher, so it is a redirect hop, not the operator's URL."""
    secret = feed_server.static("/internal-secret", SECRET_PAGE, content_type="text/html")
    url = public.static("/feed", b"moved away", status=404)
    status, _, message = await fetch_stored(tmp_path, url, moved_to=secret)
    assert status is FetchJobStatus.FAILED
    assert message is not None and "loopback address refused" in message
    assert feed_server.hits.get("/internal-secret") is None


async def test_a_moved_url_within_the_operators_network_works(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    moved = feed_server.static("/moved", rss([{"guid": "urn:m:1", "title": "m"}]))
    url = feed_server.static("/feed", b"moved away", status=404)
    status, code, _ = await fetch_stored(tmp_path, url, moved_to=moved)
    assert (status, code) == (FetchJobStatus.COMPLETED, None)


# -- what held, kept with tests ----------------------------------------------------------------

LIMITS = RequestLimits(timeout=10.0, max_bytes=1_000_000, max_redirects=5)


async def test_credentials_are_not_forwarded_to_another_host(
    public: HostServer, feed_server: FeedServer
) -> None:
    """A URL's user:password (sent as Basic auth) stays with its own host."""
    seen: list[str | None] = []

    async def target(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=rss([{"guid": "urn:c:1"}]), content_type="application/rss+xml")

    async def moved(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        return redirect(public.route("/target", target))

    feed_server.route("/feed", moved)
    url = f"http://user:secret-password@127.0.0.1:{feed_server.port}/feed"
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        response = await get(session, url, LIMITS)
    assert response.status == 200
    assert seen[0] is not None and seen[0].startswith("Basic ")  # sent where configured
    assert seen[1:] == [None]  # and nowhere else


async def test_an_https_feed_redirecting_to_plain_http_is_refused(
    self_signed: tuple[Path, Path], feed_server: FeedServer
) -> None:
    cert, key = self_signed
    plain = feed_server.static("/feed", rss([{"guid": "urn:d:1"}]))

    async def downgrade(request: web.Request) -> web.StreamResponse:
        return redirect(plain)

    app = web.Application()
    app.router.add_get("/feed", downgrade)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    trust = ssl.create_default_context(cafile=str(cert))
    async with (
        serve_app(app, context) as port,
        aiohttp.ClientSession(
            auto_decompress=False, connector=aiohttp.TCPConnector(ssl=trust)
        ) as session,
    ):
        with pytest.raises(FetchError) as info:
            await get(session, f"https://127.0.0.1:{port}/feed", LIMITS)
    assert "from https to plain http refused" in info.value.message
    assert feed_server.hits.get("/feed") is None
