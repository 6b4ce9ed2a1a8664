"""Delays a server asks for in its headers (Retry-After, Cache-Control max-age), read once
for both the feed scheduler and the webhook retries. Pure functions, no I/O.

A server may send any number of digits: ``Retry-After: 99999999999999`` is more seconds
than ``timedelta`` holds (OverflowError), and past 4300 digits ``int()`` refuses. Every
delay is therefore compared with the cap as digits first and never exceeds it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

#: The longest wait a server's header can impose (a day), feeds and webhooks alike.
HINT_CAP = timedelta(hours=24)

_MAX_AGE = re.compile(r"(?:^|[,\s])(?:s-)?max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


def capped_seconds(digits: str, cap: timedelta = HINT_CAP) -> timedelta:
    """``digits`` (ASCII 0-9 only) seconds, at most ``cap``, whatever their length."""
    limit = int(cap.total_seconds())
    digits = digits.lstrip("0") or "0"
    if len(digits) > len(str(limit)):
        return cap
    return timedelta(seconds=min(int(digits), limit))


def retry_after(value: str | None, now: datetime, cap: timedelta = HINT_CAP) -> timedelta | None:
    """Retry-After as seconds or an HTTP date, between 0 and ``cap``; None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return capped_seconds(value, cap)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(timedelta(0), when - now), cap)


def max_age(cache_control: str | None, cap: timedelta = HINT_CAP) -> timedelta | None:
    """Cache-Control's max-age (or s-maxage), at most ``cap``; None with no-cache."""
    if not cache_control or "no-cache" in cache_control.lower():
        return None
    match = _MAX_AGE.search(cache_control)
    return capped_seconds(match.group(1), cap) if match else None
