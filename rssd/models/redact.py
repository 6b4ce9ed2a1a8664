"""Credentials in URLs, kept out of everything rssd shows and stores as content.

``https://alice:s3cret@host/feed`` works as a feed URL (HTTP basic auth), but the password
must not reach a log line, a command's output, an error message or a stored post. Text is
redacted to ``https://alice:***@host/feed`` (a user name alone may be a token: ``***@``).
A database URL may carry its password as a parameter instead
(``postgresql://u@h/db?password=x``, libpq's ``password=x``): that is masked as well.
Plain functions with no dependencies: the parse workers and the log renderer use them too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

#: scheme://userinfo@ : the userinfo runs to the last "@" before the path.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#\s\"'<>]*)@")


#: ``password=`` as a URL query parameter or a libpq ``keyword=value`` pair.
_PASSWORD_PARAM = re.compile(r"(?i)(^|[?&;\s])(password=)([^&#\s\"'<>]*)")


def _masker(keep_user: bool) -> Callable[[re.Match[str]], str]:
    def mask(match: re.Match[str]) -> str:
        user, colon, _ = match.group(2).partition(":")
        if colon:
            return f"{match.group(1)}{user}:***@"
        return f"{match.group(1)}{user}@" if keep_user else f"{match.group(1)}***@"

    return mask


def _passwords(url: str) -> list[str]:
    """The passwords ``url`` carries, in its userinfo or as ``password=`` parameters."""
    found = [match.group(3) for match in _PASSWORD_PARAM.finditer(url) if match.group(3)]
    userinfo = _USERINFO.match(url.strip())
    if userinfo is not None:
        _, colon, password = userinfo.group(2).partition(":")
        if colon and password:
            found.append(password)
    return found


def redact(text: str, *, keep_user: bool = False, secrets_of: str | None = None) -> str:
    """``text`` with every URL's password masked, in its userinfo or a ``password=``
    parameter; a lone user name too (it may be a token), unless ``keep_user`` (a
    database's user name is no secret and says who connects). ``secrets_of``: a URL whose
    passwords are masked wherever they appear in ``text`` (a driver's error message may
    quote them out of URL form)."""
    for password in _passwords(secrets_of) if secrets_of else ():
        text = text.replace(password, "***")
    if "@" in text:
        text = _USERINFO.sub(_masker(keep_user), text)
    if "password=" in text.lower():
        text = _PASSWORD_PARAM.sub(r"\1\2***", text)
    return text


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
