"""The host key: which requests count against one publisher's host.

One function for everything that limits requests per host: the claims in the database
(slots, and the gap between request starts) and the fetcher's own per-process limit. Were
they to disagree, a limit would be held in one place and broken in the other: an IDN host
written in Unicode in config.toml and in punycode in a redirect is one server.

The key is the host's ASCII form (IDNA 2008, as yarl and aiohttp connect to it),
lower-cased, without a trailing dot; the port is left out (a host's ports share its
slots: one machine answers them).
"""

from __future__ import annotations

from functools import lru_cache

from rssd.models.urls import parsed_url


@lru_cache(maxsize=65536)
def host_key(url: str) -> str:
    """The politeness key of ``url``'s host ("" when it has none). Cached: the same URLs
    come back on every claim and fetch, and parsing them showed on the fetch profile."""
    try:
        host = parsed_url(url).raw_host
    except (ValueError, TypeError, UnicodeError):  # not a URL yarl can read: its text
        host = url.partition("://")[2].partition("/")[0].rpartition("@")[2]
    return (host or "").lower().rstrip(".")
