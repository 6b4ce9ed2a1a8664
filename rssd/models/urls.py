"""URL checks shared by the feed and the user tables of config.toml."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

from yarl import URL

from rssd.models.redact import redact, split_userinfo, unmaskable
from rssd.net.numeric import numeric_host_refusal


@lru_cache(maxsize=8192)
def parsed_url(url: str) -> URL:
    """``url`` as yarl reads it, parsed once: config.toml's checks, the host key and the
    request each parsed every feed's URL again (three of four parses of a pass of
    2,000 feeds; bench/README.md). yarl's URLs are immutable, so one may be shared. Raises
    as ``URL()`` does (a failure is not cached)."""
    return URL(url)


def normalize_url(url: str) -> str:
    """The form two URLs are compared in: scheme and host are case-insensitive, the rest is not."""
    parsed = parsed_url(url.strip())
    return str(parsed.with_scheme(parsed.scheme.lower()).with_host(parsed.host.lower()))  # type: ignore[union-attr]


def check_http_url(value: str) -> str:
    """Accept only absolute http(s) URLs with a host; anything else is an operator typo.

    Control and format characters are refused, not left to yarl: it drops a CR LF
    silently, so ``http://a\r\nb/`` would become a request to host ``ab``. Credentials
    are accepted only where redaction reads them as yarl does (rssd.models.redact), so
    whatever is accepted is also masked."""
    value = value.strip()
    # One call for the whole URL first: char by char, 2,000 feeds took 0.1 s at start.
    bad = None if value.isprintable() else next(c for c in value if not c.isprintable())
    if bad is not None:
        raise ValueError(f"URL contains the control character U+{ord(bad):04X}: {_shown(value)!r}")
    unsafe = unmaskable(value)
    if unsafe is not None:
        raise ValueError(
            f"URL credentials contain {unsafe!r}, which would end them in a log line: "
            f"write it percent-encoded ({quote(unsafe, safe='')}): {_shown(value)!r}"
        )
    try:
        parsed = parsed_url(value)
        port = parsed.port
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a valid URL: {_shown(value)!r}") from exc
    if parsed.scheme.lower() not in ("http", "https"):
        raise ValueError(f"URL must start with http:// or https://, got {_shown(value)!r}")
    if not parsed.host:
        raise ValueError(f"URL has no host: {_shown(value)!r}")
    parts = split_userinfo(value)
    if parts is not None and "@" in parts[2]:
        # What follows the credentials holds another "@": most likely a password with "@"
        # and then "/", "?" or "#", whose tail a URL parser reads as the host and the path
        # (and every log line would show); an "@" of the path itself can be written %40.
        raise ValueError(
            f"URL has credentials and another '@' after them: percent-encode a password's "
            f"'@', '/', '?' and '#', and write an '@' of the path as %40: {_shown(value)!r}"
        )
    if (parts is None) is not (parsed.raw_user is None and parsed.raw_password is None) or (
        parts is not None and URL(parts[0] + parts[2]).raw_host != parsed.raw_host
    ):
        raise ValueError(f"URL credentials cannot be told from its host: {_shown(value)!r}")
    refused = numeric_host_refusal(parsed.raw_host or "") or numeric_host_refusal(parsed.host)
    if refused:
        raise ValueError(f"URL {refused}: {_shown(value)!r}")
    if port == 0:
        raise ValueError(f"URL has port 0, which no server listens on: {_shown(value)!r}")
    return value


def shown_url(value: str) -> str:
    """``value`` as an output may show it, whatever config.toml holds: redacted, and, when
    it is no URL rssd accepts, masked up to its last ``@`` as ``check_http_url``'s own
    refusals are (a table's other errors name its feed by its URL too)."""
    try:
        check_http_url(value)
    except ValueError:
        return _shown(value)
    return redact(value)


def _shown(value: str) -> str:
    """``value`` for an error message: redacted, and with everything before its last
    ``@`` masked when that ``@`` is not where redaction finds credentials (a password
    holding ``/``, ``?`` or ``#`` is no password to a URL parser, but it is the
    operator's)."""
    scheme, sep, rest = value.partition("://")
    parts = split_userinfo(value)
    if sep and "@" in rest and (parts is None or "@" in parts[2]):
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return redact(value)
