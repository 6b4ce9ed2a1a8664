"""Argument types of the operator commands, kept light: the CLI builds its parser for every
command, so nothing here may import what only one command needs (pydantic, aiohttp...)."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

from rssd.clock import utcnow

DEFAULT_LIMIT = 20
#: ``rssd deliveries --limit`` (rssd.commands.deliveries reads it from here).
DEFAULT_DELIVERIES_LIMIT = 50

_SPAN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """'2h', '30m', '7d', '1w' (before now), or a date or time: '2026-11-01',
    '2026-11-01T08:00', '2026-11-01T08:00:00+01:00'. No zone means UTC.

    Raises argparse.ArgumentTypeError, so a bad value is a usage error (exit 2).
    """
    match = _SPAN.match(text)
    if match:
        amount, unit = int(match.group(1)), _UNIT[match.group(2).lower()]
        return (now or utcnow()) - timedelta(**{unit: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a span like 2h, 30m, 7d, 1w or a date like 2026-11-01"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number, 0 for no limit")
    return int(text)
