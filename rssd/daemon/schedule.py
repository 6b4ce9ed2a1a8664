"""When is a source due again? Pure functions of its history and the server's hints, no I/O.

Rules (issue #3):
- due at the latest job's end plus the interval, with +-10% jitter so that feeds added
  together spread out and failed feeds do not retry in lockstep;
- after consecutive failures, exponential backoff from the interval, capped (24 h by
  default), never giving up: feeds that fail for hours come back by themselves;
- the server may ask for longer, never shorter: Retry-After (429/503, seconds or an HTTP
  date), Cache-Control max-age, Expires and RSS <ttl> stretch the interval, capped;
- 410 Gone: not due until the config entry changes or an operator fetches it by hand;
- a job that ended ``interrupted`` was the daemon's fault, not the feed's: due at once;
- a permanent redirect seen MOVED_AFTER times in a row: fetch the new URL directly, until
  it fails (then back to the configured one).

``plan_next`` applies them when a job ends; its result is queued in the same transaction
(rssd/repo/next_job.py), so the schedule lives in the database, not in a daemon's memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rssd.models.delays import HINT_CAP, max_age, retry_after
from rssd.models.dto import Source

DEFAULT_MAX_BACKOFF = timedelta(hours=24)
DEFAULT_MAX_HINT = HINT_CAP
JITTER = 0.1
#: New sources are spread over this much time (at most their interval) so that a config
#: with hundreds of new feeds does not fire all of them in the same second.
NEW_SOURCE_SPREAD = timedelta(seconds=10)


@dataclass(frozen=True)
class History:
    """What the scheduler needs to know of a source's past fetches."""

    ended_at: datetime | None = None  # end of the latest job; None: never fetched
    failures: int = 0  # consecutive failures since the last success; interrupted excluded
    interrupted: bool = False  # the latest job ended ``interrupted``
    gone: bool = False  # the latest job got 410 and the config entry did not change since


@dataclass(frozen=True)
class Hints:
    """What the latest response asked of us."""

    http_status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    ttl_minutes: int | None = None


@dataclass(frozen=True)
class Policy:
    interval: timedelta
    max_backoff: timedelta = DEFAULT_MAX_BACKOFF
    max_hint: timedelta = DEFAULT_MAX_HINT


def source_policy(source: Source) -> Policy:
    """A source's scheduling policy: its interval, the default caps. The one place that
    says so, for the daemon's schedule and ``rssd status``'s estimate alike."""
    return Policy(interval=timedelta(minutes=source.interval_minutes))


def backoff(interval: timedelta, failures: int, cap: timedelta) -> timedelta:
    """interval, 2x, 4x ... after 1, 2, 3 ... failures; capped, but never below the interval."""
    if failures <= 1:
        return interval
    factor = 2 ** min(failures - 1, 30)
    delay: timedelta = min(interval * factor, cap)
    return max(interval, delay)


def expires(value: str | None, now: datetime) -> timedelta | None:
    return retry_after(value, now) if value and not value.strip().isdigit() else None


def requested_delay(hints: Hints, now: datetime) -> timedelta | None:
    """The longest wait the server asked for, if any."""
    headers = {key.lower(): value for key, value in hints.headers.items()}
    asked: list[timedelta] = []
    if hints.http_status in (429, 503):
        delay = retry_after(headers.get("retry-after"), now)
        if delay is not None:
            asked.append(delay)
    age = max_age(headers.get("cache-control"))
    if age is not None:
        asked.append(age)
    elif (until := expires(headers.get("expires"), now)) is not None:
        asked.append(until)  # max-age wins over Expires (RFC 9111 5.3)
    if hints.ttl_minutes:
        asked.append(timedelta(minutes=hints.ttl_minutes))
    return max(asked) if asked else None


def next_due(
    history: History,
    policy: Policy,
    now: datetime,
    jitter: float,
    hints: Hints | None = None,
) -> datetime | None:
    """When the source is due next; None means not until the operator acts (410 Gone).

    ``jitter`` is a number in [0, 1) supplied by the caller (random in the daemon, fixed in
    tests), so this function stays deterministic.
    """
    if history.gone:
        return None
    if history.ended_at is None:
        return now + min(NEW_SOURCE_SPREAD, policy.interval) * jitter
    if history.interrupted:
        return now
    delay = backoff(policy.interval, history.failures, policy.max_backoff)
    asked = requested_delay(hints, now) if hints else None
    if asked is not None and asked > delay:
        delay = max(delay, min(asked, policy.max_hint))
    delay = delay * (1 - JITTER + 2 * JITTER * jitter)
    return history.ended_at + delay


#: A permanent redirect seen this many times in a row makes us fetch the new URL directly.
MOVED_AFTER = 2


@dataclass(frozen=True)
class Ending:
    """How an attempt ended, as far as the next one is concerned."""

    completed: bool
    interrupted: bool = False
    gone: bool = False
    hints: Hints | None = None
    moved_permanently: bool = False
    final_url: str | None = None


@dataclass(frozen=True)
class Carried:
    """What the schedule remembers between a source's jobs."""

    failures: int = 0  # consecutive failures, ``interrupted`` excluded
    fetch_url: str | None = None  # the URL it moved to (None: the configured one)
    moved_seen: int = 0  # permanent redirects to the same place in a row


@dataclass(frozen=True)
class Plan:
    due: datetime | None  # None: gone, not fetched again until the config entry changes
    carried: Carried
    moved_now: bool  # fetch_url changed by this ending: worth a log line


def plan_next(
    configured_url: str,
    before: Carried,
    ending: Ending,
    policy: Policy,
    *,
    now: datetime,
    jitter: float,
) -> Plan:
    """The source's next job after ``ending``: when, and what it carries on."""
    failures = before.failures
    fetch_url, moved_seen, moved_now = before.fetch_url, before.moved_seen, False
    if ending.completed:
        failures = 0
    elif not ending.interrupted:
        failures += 1
        if fetch_url:  # the new location failed: back to the configured URL
            fetch_url, moved_seen = None, 0
    if ending.completed or not ending.interrupted:
        target = ending.final_url
        if not ending.moved_permanently or not target or target == configured_url:
            moved_seen = moved_seen if fetch_url else 0
        else:
            moved_seen += 1
            if moved_seen >= MOVED_AFTER and fetch_url != target:
                fetch_url, moved_now = target, True
    history = History(
        ended_at=now, failures=failures, interrupted=ending.interrupted, gone=ending.gone
    )
    due = next_due(history, policy, now, jitter, ending.hints)
    return Plan(due, Carried(failures, fetch_url, moved_seen), moved_now)
