"""Issue 20.1: numeric IPv4 hosts in forms other than the dotted quad are refused
everywhere a URL comes in (config.toml, a webhook send, a feed fetch, a redirect).

Before: ``http://127.1/``, ``http://2130706433/``, ``http://0177.0.0.1/`` and the like were
accepted by config.toml, passed the webhook guard's literal check (``ipaddress`` does not
read them), and on aiohttp 3.11-3.13 went to the socket without the guarded resolver:
loopback received a signed POST with ``allow_private_networks = false``. The decision is
the pure rssd.net.numeric, checked against the C library's own ``inet_aton``; the receivers
here are real loopback servers.

Issue 20.10 at the end: ``::ffff:0:a.b.c.d`` (IPv4-translated) is judged by its IPv4.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from rssd.fetch.http import FetchError, RequestLimits, get
from rssd.models.config import ConfigError, config_of
from rssd.models.dto import ErrorCode
from rssd.models.urls import check_http_url
from rssd.models.users import WebhookSecret
from rssd.net.addresses import AddressClass, address_class, parse_address
from rssd.net.numeric import inet_aton, is_dotted_quad, numeric_host_refusal
from rssd.webhooks.guard import AddressRefused, check_literal
from rssd.webhooks.sender import Sender
from tests.conftest import FeedServer, rss
from tests.support.config import make_config
from tests.support.webhooks import SECRETS, Receiver
from tests.test_discover import Site, fetch_all

#: Every legacy form: (host as written in a URL, the address the C resolver makes of it).
LEGACY = [
    ("127.1", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("2130706433", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("127.000.000.001", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("127.0.0.0x1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0X7F.0.0.1", "127.0.0.1"),
    ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
    ("00000000000000000177.0.0.1", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),  # a trailing dot: a name to DNS, a literal to aiohttp
    ("127.1.", "127.0.0.1"),
    ("2852039166", "169.254.169.254"),  # cloud metadata
    ("0xa9fea9fe", "169.254.169.254"),
    ("0251.0376.0251.0376", "169.254.169.254"),
    ("169.254.43518", "169.254.169.254"),
    ("10.1", "10.0.0.1"),
    ("0300.0250.1.1", "192.168.1.1"),
    ("3232235777", "192.168.1.1"),
    ("8.8.2056", "8.8.8.8"),  # a public address too: one spelling per address
    ("134744072", "8.8.8.8"),
]
#: Hosts that look numeric but are no IPv4 address at all (aiohttp < 3.14 would still have
#: handed them to the socket as literals, bypassing the guarded resolver).
NOT_IPV4 = ["1.2.3.4.5", "256.0.0.1", "127.0.0.256", "4294967296", "08.0.0.1", "0x", "a.0x1"]
#: Hosts that pass: dotted quads (the guard then judges them), names, IPv6 literals.
PASS = [
    "127.0.0.1",
    "8.8.8.8",
    "0.0.0.0",
    "255.255.255.255",
    "example.org",
    "localhost",
    "1password.com",
    "123.example",
    "0x7f.example",
    "example.123abc",
    "::1",
    "::ffff:7f00:1",
    "",
]


@pytest.mark.parametrize(("host", "address"), LEGACY)
def test_every_legacy_form_is_refused_naming_its_address(host: str, address: str) -> None:
    reason = numeric_host_refusal(host)
    assert reason is not None
    assert f"is {address} in a legacy numeric form" in reason
    # The reference: what the C library itself makes of the host.
    assert str(inet_aton(host.removesuffix("."))) == address
    assert socket.inet_ntoa(socket.inet_aton(host.removesuffix("."))) == address


@pytest.mark.parametrize("host", NOT_IPV4)
def test_numeric_looking_hosts_that_are_no_address_are_refused(host: str) -> None:
    assert numeric_host_refusal(host) == f"host {host} looks numeric but is no IPv4 address"


@pytest.mark.parametrize("host", PASS)
def test_dotted_quads_names_and_ipv6_pass(host: str) -> None:
    assert numeric_host_refusal(host) is None


def test_unicode_digits_are_refused_as_aiohttp_before_3_14_read_them() -> None:
    # yarl keeps the host in Unicode beside its punycode: the digits test saw it as numeric.
    assert numeric_host_refusal("\u0661\u0662\u0667.\u0660.\u0660.\u0661") is not None


_part = st.one_of(
    st.integers(0, 2**32).map(str),
    st.integers(0, 2**32).map(lambda n: f"0{n:o}"),
    st.integers(0, 2**32).map(lambda n: f"0x{n:x}"),
    st.sampled_from(["0x", "08", "09", "00", "0"]),
)


@given(st.lists(_part, min_size=1, max_size=5))
def test_inet_aton_agrees_with_the_c_library(parts: list[str]) -> None:
    host = ".".join(parts)
    try:
        expected: str | None = socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        expected = None
    parsed = inet_aton(host)
    assert (None if parsed is None else str(parsed)) == expected
    # And one rule for all: refused unless it is the dotted quad of its own address.
    if expected is not None:
        assert (numeric_host_refusal(host) is None) is (host == expected)
        assert is_dotted_quad(host) is (host == expected)


@pytest.mark.parametrize(("host", "address"), LEGACY)
def test_config_refuses_legacy_hosts_for_feeds_and_webhooks(host: str, address: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"write it as {address}")):
        check_http_url(f"http://{host}:8080/hook")
    with pytest.raises(ConfigError, match="legacy numeric form"):
        config_of({"feeds": [{"url": f"http://{host}/feed"}]})


def test_config_still_takes_dotted_quads_and_names() -> None:
    for url in ("http://127.0.0.1:8080/feed", "https://1password.com/feed", "http://[::1]/"):
        assert check_http_url(url) == url


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize("host", [host for host, _ in LEGACY] + NOT_IPV4)
def test_the_webhook_guard_refuses_every_form(host: str, allow_private: bool) -> None:
    with pytest.raises(AddressRefused, match=r"^refused: host "):
        check_literal(host, allow_private)


#: The forms of 127.0.0.1 that the issue saw reach a loopback receiver.
OBSERVED = ["127.1", "0", "2130706433", "0177.0.0.1", "017700000001", "127.000.000.001"]


@pytest.mark.parametrize("host", [*OBSERVED, "0x7f.1", "127.0.0.1."])
async def test_no_webhook_reaches_loopback_through_a_legacy_host(
    receiver: Receiver, host: str
) -> None:
    url = receiver.url("alice").replace("127.0.0.1", host)
    config = config_of({"webhooks": {"allow_private_networks": False}}).webhooks
    async with Sender(config, "rssd-test") as sender:
        answer = await sender.send(url, WebhookSecret.parse(SECRETS["alice"]), "msg_1", b"{}")
    assert answer.status is None
    assert str(answer.error).startswith(f"refused: host {host} is ")
    assert receiver.attempts == {}


LIMITS = RequestLimits(timeout=10.0, max_bytes=1_000_000, max_redirects=5)


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f.1"])
async def test_a_feed_url_with_a_legacy_host_is_refused_before_connecting(
    feed_server: FeedServer, host: str
) -> None:
    url = feed_server.static("/feed", rss([{"guid": "1", "title": "one"}]))
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        with pytest.raises(FetchError) as caught:
            await get(session, url.replace("127.0.0.1", host), LIMITS)
    assert caught.value.code is ErrorCode.HTTP_ERROR
    assert caught.value.message.startswith(f"refused: host {host} is 127.0.0.1")
    assert feed_server.hits.get("/feed") is None


async def test_a_redirect_to_a_legacy_host_is_refused_even_within_private_networks(
    feed_server: FeedServer,
) -> None:
    """From loopback to loopback the address guard has nothing to say; the host rule does."""
    target = feed_server.static("/target", rss([{"guid": "1", "title": "one"}]))

    async def hop(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": target.replace("127.0.0.1", "127.1")})

    url = feed_server.route("/feed", hop)
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        with pytest.raises(FetchError) as caught:
            await get(session, url, LIMITS)
    assert caught.value.message.startswith("redirect refused: host 127.1 is 127.0.0.1")
    assert caught.value.http_status == 302
    assert feed_server.hits.get("/target") is None


async def test_a_discovered_feed_link_with_a_legacy_host_is_refused(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """A page (on loopback: no address rule applies) linking to its feed as 127.1."""
    site = Site(feed_server)
    target = feed_server.static("/feed.rss", rss([{"guid": "1", "title": "one"}]))
    legacy = target.replace("127.0.0.1", "127.1")
    site.head = f'<link rel="alternate" type="application/rss+xml" href="{legacy}">'
    (report,) = await fetch_all(make_config(tmp_path, [site.url]), 1)
    assert report.error_code is ErrorCode.HTTP_ERROR
    assert "host 127.1 is 127.0.0.1 in a legacy numeric form" in str(report.error_message)
    assert feed_server.hits.get("/feed.rss") is None


# -- issue 20.10: IPv4-translated addresses (RFC 2765) ---------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("::ffff:0:127.0.0.1", AddressClass.LOOPBACK),
        ("::ffff:0:10.0.0.1", AddressClass.PRIVATE),
        ("::ffff:0:169.254.169.254", AddressClass.LINK_LOCAL),
        ("::ffff:0:192.168.1.1", AddressClass.PRIVATE),
        ("::ffff:0:0.0.0.0", AddressClass.UNSPECIFIED),
        ("::ffff:0:8.8.8.8", AddressClass.GLOBAL),
        ("[::ffff:0:7f00:1]", AddressClass.LOOPBACK),
        # The neighbours keep their own classes.
        ("::ffff:127.0.0.1", AddressClass.LOOPBACK),  # mapped
        ("64:ff9b::7f00:1", AddressClass.LOOPBACK),  # NAT64
        ("2001:4860:4860::8888", AddressClass.GLOBAL),
    ],
)
def test_ipv4_translated_addresses_are_judged_by_their_ipv4(
    address: str, expected: AddressClass
) -> None:
    parsed = parse_address(address)
    assert isinstance(parsed, ipaddress.IPv6Address)
    assert address_class(parsed) is expected
