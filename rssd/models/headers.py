"""The request headers a feed is configured with, and rssd's own User-Agent: the rules
that both config.toml's check (rssd/models/config_check.py) and its build
(rssd/models/config.py) apply."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from rssd import PROJECT_URL, __version__
from rssd.models.files import FileTooLarge, read_regular_file
from rssd.models.redact import split_userinfo

#: rssd's name, version and home, for publishers reading their logs; a feed's requests add
#: its subscriber count (``Config.agent_for``), as hosted aggregators do.
DEFAULT_USER_AGENT = f"rssd/{__version__} (+{PROJECT_URL})"

#: RFC 9110 token: what a header name may be made of.
#: A headers_file holds a few header lines; anything larger is not one (/dev/zero, a log).
MAX_HEADERS_FILE_BYTES = 64 * 1024
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: Set by rssd itself; a feed's own value would break the fetch or its bounds.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}
)


def check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names must be tokens and values one line; the message never quotes a value
    (it is usually a secret)."""
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid HTTP header name")
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"{name!r} is set by rssd itself and cannot be configured")
        if not isinstance(value, str) or re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value):
            raise ValueError(f"the value of header {name!r} must be one line of text")
    return dict(headers)


def read_headers_file(path: Path) -> dict[str, str]:
    """``Name: value`` lines (blank lines and ``#`` comments ignored); raises ValueError
    naming the file and line, never quoting the line (it holds a secret)."""
    try:
        text = read_regular_file(path, MAX_HEADERS_FILE_BYTES).decode("utf-8")
    except FileTooLarge:
        raise ValueError(f"{path} is larger than {MAX_HEADERS_FILE_BYTES // 1024} KiB") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"cannot read {path}: {reason}") from None
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, colon, value = stripped.partition(":")
        if not colon or not name.strip():
            raise ValueError(f"{path} line {number}: expected `Name: value`")
        headers[name.strip()] = value.strip()
    try:
        return check_headers(headers)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def auth_clash(url: str, headers: Mapping[str, str]) -> str | None:
    """Why a feed's credentials cannot work, or None. A URL's ``user:password@`` becomes
    an Authorization header; with one configured as well, aiohttp refuses every request
    before any exchange, so it is a config error, not a fetch failure."""
    if split_userinfo(url) is None or not any(name.lower() == "authorization" for name in headers):
        return None
    return (
        "credentials in the URL (user:password@) and an Authorization header cannot be "
        "combined: keep one of them"
    )
