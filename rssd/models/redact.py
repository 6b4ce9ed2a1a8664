"""Credentials in URLs, kept out of everything rssd shows and stores as content.

``https://alice:s3cret@host/feed`` works as a feed URL (HTTP basic auth), but the password
must not reach a log line, a command's output, an error message or a stored post. Text is
redacted to ``https://alice:***@host/feed`` (a user name alone may be a token: ``***@``).
Plain functions with no dependencies: the parse workers and the log renderer use them too.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: scheme://userinfo@ : the userinfo runs to the last "@" before the path.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#\s\"'<>]*)@")


def _mask(match: re.Match[str]) -> str:
    user, colon, _ = match.group(2).partition(":")
    return f"{match.group(1)}{user}:***@" if colon else f"{match.group(1)}***@"


def redact(text: str) -> str:
    """``text`` with the password (or a lone user name) of every URL in it masked."""
    if "@" not in text:
        return text
    return _USERINFO.sub(_mask, text)


def redact_optional(text: str | None) -> str | None:
    return None if text is None else redact(text)


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@``: the base that relative links and ids of a
    feed resolve against, so no post stores the credentials. A URL without them is
    returned unchanged, character for character (existing post ids must not move)."""
    match = _USERINFO.match(url.strip())
    if match is None:
        return url
    return match.group(1) + url.strip()[match.end() :]


def has_userinfo(url: str) -> bool:
    return _USERINFO.match(url.strip()) is not None


def with_credentials(url: str, origin: str) -> str:
    """``url`` with ``origin``'s ``user:password@`` when both name the same host and
    ``url`` has none: a page behind basic auth links to its feed on the same host by
    path, and that feed needs the same credentials. Another host never gets them."""
    match = _USERINFO.match(origin.strip())
    if match is None or has_userinfo(url):
        return url
    here, there = urlsplit(url), urlsplit(strip_userinfo(origin))
    if (here.scheme, here.netloc.lower()) != (there.scheme, there.netloc.lower()):
        return url
    return f"{here.scheme}://{match.group(2)}@{url.strip()[len(here.scheme) + 3 :]}"


def same_origin(url: str, origin: str) -> bool:
    """Scheme, host and port equal (credentials aside): where a feed's configured
    request headers may be sent."""
    here, there = urlsplit(strip_userinfo(url)), urlsplit(strip_userinfo(origin))
    return (here.scheme.lower(), here.netloc.lower()) == (
        there.scheme.lower(),
        there.netloc.lower(),
    )
