"""The host key: one answer for the claims and the fetcher alike (issues 22 and 24)."""

from __future__ import annotations

import pytest

from rssd.net.hosts import host_key


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://A.Example:8080/x", "a.example"),
        ("https://b.example/", "b.example"),
        ("https://b.example./feed", "b.example"),  # the root's dot names the same host
        ("https://user:secret@C.example/feed", "c.example"),
        ("https://xn--bcher-kva.de/", "xn--bcher-kva.de"),
        ("https://bücher.de/", "xn--bcher-kva.de"),
        ("https://BÜCHER.de:8443/feed", "xn--bcher-kva.de"),
        ("https://xn--BCHER-kva.de/", "xn--bcher-kva.de"),
        ("http://127.0.0.1:9000/feed", "127.0.0.1"),
        ("http://[::1]:9000/feed", "::1"),
        ("not a url", ""),
    ],
)
def test_host_key(url: str, key: str) -> None:
    assert host_key(url) == key


def test_an_idn_host_and_its_punycode_are_one_host() -> None:
    assert host_key("https://xn--bcher-kva.de/") == host_key("https://bücher.de/")
