"""Credentials in URLs, kept out of everything rssd shows and stores as content.

``https://alice:s3cret@host/feed`` works as a feed URL (HTTP basic auth), but the password
must not reach a log line, a command's output, an error message or a stored post. Text is
redacted to ``https://alice:***@host/feed`` (a user name alone may be a token: ``***@``).
A database URL may carry its password as a parameter instead
(``postgresql://u@h/db?password=x``, libpq's ``password=x``): that is masked as well.

One rule decides both what a URL may carry and what is masked (``CREDENTIAL_CHARS``):
in running text a URL's credentials end at whitespace, a quote or a bracket, so a
password holding one of those could not be told from the words around it, and config
validation refuses it (``unmaskable``: write it percent-encoded). A text that is one
URL (a configured URL, wherever shown) is split exactly, so even such a password is
masked there. Plain functions with no dependencies: the parse workers and the log
renderer use them too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

#: What a URL's user name and password may hold as written: anything but the delimiters
#: that end the authority (``/?#``), whitespace, and the quotes and brackets that end a
#: URL quoted in text. ``'`` stays allowed (RFC 3986 permits it; a quote before the
#: scheme does not end the credentials).
_ENDS_IN_TEXT = r"\s\"<>"
CREDENTIAL_CHARS = rf"[^/?#{_ENDS_IN_TEXT}]"
_OUTSIDE = re.compile(rf"[{_ENDS_IN_TEXT}]")
#: A ``password=`` value ends at the next parameter, and at ``'`` (libpq quotes with it).
_PARAM_CHARS = rf"[^&#'{_ENDS_IN_TEXT}]"
_OUTSIDE_PARAM = re.compile(rf"['{_ENDS_IN_TEXT}]")

#: scheme://userinfo@ in running text: the userinfo runs to the last "@" before the path.
_USERINFO = re.compile(rf"(?i)\b([a-z][a-z0-9+.-]*://)({CREDENTIAL_CHARS}*)@")
_SCHEME = re.compile(r"(?i)[a-z][a-z0-9+.-]*://")
_AUTHORITY_END = re.compile(r"[/?#]")

#: ``password=`` as a URL query parameter or a libpq ``keyword=value`` pair.
_PASSWORD_PARAM = re.compile(rf"(?i)(^|[?&;\s])(password=)({_PARAM_CHARS}*)")


def split_userinfo(url: str) -> tuple[str, str, str] | None:
    """A whole URL as (``scheme://``, its userinfo, the rest from the host on), or None
    when it has no userinfo. The authority ends at the first ``/``, ``?`` or ``#``; the
    userinfo at its last ``@`` (an unescaped ``@`` in a password stays in the password,
    as yarl reads it). Exact for a URL on its own, whatever its password holds."""
    if "@" not in url:  # most URLs: every log line and every fetch asks
        return None
    text = url.strip()
    scheme = _SCHEME.match(text)
    if scheme is None:
        return None
    start = scheme.end()
    end = _AUTHORITY_END.search(text, start)
    userinfo, at, _ = text[start : end.start() if end else len(text)].rpartition("@")
    if not at:
        return None
    return scheme.group(0), userinfo, text[start + len(userinfo) + 1 :]


def unmaskable(url: str) -> str | None:
    """The first character of ``url``'s credentials (userinfo or ``password=`` value)
    that would end them in running text, so that redaction could not mask them there;
    None if there is none. Config validation refuses such a URL."""
    parts = split_userinfo(url)
    found = _OUTSIDE.search(parts[1]) if parts else None
    query = url.partition("?")[2].partition("#")[0]
    for pair in query.split("&") if found is None else ():
        name, equals, value = pair.partition("=")
        if equals and name.lower() == "password":
            found = _OUTSIDE_PARAM.search(value)
            if found:
                break
    return found.group(0) if found else None


def _masker(keep_user: bool) -> Callable[[re.Match[str]], str]:
    def mask(match: re.Match[str]) -> str:
        return match.group(1) + _masked(match.group(2), keep_user)

    return mask


def _masked(userinfo: str, keep_user: bool) -> str:
    user, colon, _ = userinfo.partition(":")
    if colon:
        return f"{user}:***@"
    return f"{user}@" if keep_user else "***@"


def _passwords(url: str) -> list[str]:
    """The passwords ``url`` carries, in its userinfo or as ``password=`` parameters."""
    found = [match.group(3) for match in _PASSWORD_PARAM.finditer(url) if match.group(3)]
    parts = split_userinfo(url)
    if parts is not None:
        _, colon, password = parts[1].partition(":")
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
    whole = split_userinfo(text) if "@" in text else None
    if whole is not None and not any(char.isspace() for char in whole[2].rstrip()):
        # One URL on its own (what follows its credentials is one word): split exactly.
        scheme, userinfo, rest = whole
        lead, tail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
        if "@" in rest:  # more URLs after it, in its query (?next=https://a:b@h/)
            rest = _USERINFO.sub(_masker(keep_user), rest)
        text = f"{lead}{scheme}{_masked(userinfo, keep_user)}{rest}{tail}"
    elif "@" in text:
        text = _USERINFO.sub(_masker(keep_user), text)
    if "password=" in text.lower():
        text = _PASSWORD_PARAM.sub(r"\1\2***", text)
    return text


def redact_endpoint(url: str, fmt: str) -> str:
    """A user's webhook URL for output. Slack's and Discord's carry their token in the
    path and an ntfy topic is its own password: of those only the scheme and host show."""
    return redact(url) if fmt == "standard" else host_only(url)


def host_only(url: str) -> str:
    """``scheme://host/***``: whatever follows the host (a path, or at once a query or a
    fragment) hidden, and a user name or password before it."""
    scheme, _, rest = url.partition("://")
    end = _AUTHORITY_END.search(rest)
    host = (rest[: end.start()] if end else rest).rsplit("@", 1)[-1]
    return f"{scheme}://{host}/***"


def redact_optional(text: str | None) -> str | None:
    return None if text is None else redact(text)


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@``: the base that relative links and ids of a
    feed resolve against, so no post stores the credentials. A URL without them is
    returned unchanged, character for character (existing post ids must not move)."""
    parts = split_userinfo(url)
    if parts is None:
        return url
    return parts[0] + parts[2]


def has_userinfo(url: str) -> bool:
    return split_userinfo(url) is not None


def with_credentials(url: str, origin: str) -> str:
    """``url`` with ``origin``'s ``user:password@`` when both name the same host and
    ``url`` has none: a page behind basic auth links to its feed on the same host by
    path, and that feed needs the same credentials. Another host never gets them."""
    parts = split_userinfo(origin)
    if parts is None or has_userinfo(url):
        return url
    here, there = urlsplit(url), urlsplit(strip_userinfo(origin))
    if (here.scheme, here.netloc.lower()) != (there.scheme, there.netloc.lower()):
        return url
    return f"{here.scheme}://{parts[1]}@{url.strip()[len(here.scheme) + 3 :]}"


def same_origin(url: str, origin: str) -> bool:
    """Scheme, host and port equal (credentials aside): where a feed's configured
    request headers may be sent."""
    here, there = urlsplit(strip_userinfo(url)), urlsplit(strip_userinfo(origin))
    return (here.scheme.lower(), here.netloc.lower()) == (
        there.scheme.lower(),
        there.netloc.lower(),
    )
