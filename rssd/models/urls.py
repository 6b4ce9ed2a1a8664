"""URL checks shared by the feed and the user tables of config.toml."""

from __future__ import annotations

from yarl import URL

from rssd.models.redact import redact
from rssd.net.numeric import numeric_host_refusal


def normalize_url(url: str) -> str:
    """The form two URLs are compared in: scheme and host are case-insensitive, the rest is not."""
    parsed = URL(url.strip())
    return str(parsed.with_scheme(parsed.scheme.lower()).with_host(parsed.host.lower()))  # type: ignore[union-attr]


def check_http_url(value: str) -> str:
    """Accept only absolute http(s) URLs with a host; anything else is an operator typo.

    Control and format characters are refused, not left to yarl: it drops a CR LF
    silently, so ``http://a\r\nb/`` would become a request to host ``ab``."""
    value = value.strip()
    bad = next((char for char in value if not char.isprintable()), None)
    if bad is not None:
        raise ValueError(f"URL contains the control character U+{ord(bad):04X}: {redact(value)!r}")
    try:
        parsed = URL(value)
        port = parsed.port
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a valid URL: {redact(value)!r}") from exc
    if parsed.scheme.lower() not in ("http", "https"):
        raise ValueError(f"URL must start with http:// or https://, got {redact(value)!r}")
    if not parsed.host:
        raise ValueError(f"URL has no host: {redact(value)!r}")
    refused = numeric_host_refusal(parsed.raw_host or "") or numeric_host_refusal(parsed.host)
    if refused:
        raise ValueError(f"URL {refused}: {redact(value)!r}")
    if port == 0:
        raise ValueError(f"URL has port 0, which no server listens on: {redact(value)!r}")
    return value
