"""When is a source due again? Pure functions of its history and the server's hints, no I/O.

Rules (issues #3 and #24):
- the interval: fixed when the feed sets ``interval_minutes`` itself; otherwise it follows
  the feed's posting rate (``adaptive_interval``), between its min and max interval, and a
  feed with no history yet starts at the global ``interval_minutes``;
- a poll made in the feed's quiet hours (those of the day its publisher has not posted in
  for a month) plans the next one at their end;
- due at the latest job's end plus the interval, with +-10% jitter so that feeds added
  together spread out;
- after consecutive failures, exponential backoff from the interval, capped (24 h by
  default), never giving up: feeds that fail for hours come back by themselves; a backoff
  is jittered down by up to half, so feeds that failed together (a host down) come back
  spread out, not as one burst;
- the server may ask for longer, never shorter: Retry-After (429/503, seconds or an HTTP
  date), Cache-Control max-age, Expires, RSS <ttl> and sy:updatePeriod stretch the
  interval, capped;
- 410 Gone: not due until the config entry changes or an operator fetches it by hand;
- a job that ended ``interrupted`` was the daemon's fault, not the feed's: due at once;
- a permanent redirect seen MOVED_AFTER times in a row: fetch the new URL directly, until
  it fails (then back to the configured one).

``plan_next`` applies them when a job ends; its result is queued in the same transaction
(rssd/repo/transitions.py), so the schedule lives in the database, not in a daemon's memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from msgspec import Struct, field

from rssd.models.delays import HINT_CAP, max_age, retry_after
from rssd.models.dto import Source

DEFAULT_MAX_BACKOFF = timedelta(hours=24)
DEFAULT_MAX_HINT = HINT_CAP
JITTER = 0.1
#: A backoff is multiplied by a number in [1 - BACKOFF_JITTER, 1]: feeds that failed in the
#: same minute (their host was down) spread over half their backoff when they retry.
BACKOFF_JITTER = 0.5

#: How far back a feed's posts count towards its posting rate: long enough to see a weekly
#: feed post four times, short enough to follow a feed that changed its pace this month.
RATE_WINDOW = timedelta(days=30)
#: The gap between posts at which a feed is polled once per post, in min intervals:
#: PIVOT_FACTOR * min_interval_minutes (two hours at the default 15 minutes). The interval
#: is the geometric mean of the feed's gap and this pivot, ``sqrt(gap * pivot)``: at the
#: defaults a feed posting every 5 minutes is polled every 24, every 15 minutes every 42, a
#: weekly one every 18 hours (feeds posting every 1.9 minutes or faster at the minimum).
#: The square root is the classic rule for freshness on a budget of requests: polling in
#: proportion to the rate (once per post, as Miniflux does) spends most requests on the
#: few fast feeds, whose posts are late by little anyway, and leaves the slow ones late
#: by days; the square root shares the delay out more evenly for the same requests. Tied
#: to the minimum, the curve moves with it: an operator who polls less often at the top
#: polls less often everywhere (and a test with a minimum of seconds sees a curve of
#: seconds).
PIVOT_FACTOR = 8.0
#: ...but no longer than ACTIVE_CAP_FACTOR min intervals (an hour at the defaults) for a
#: feed posting at least once a day, a cap growing with the square of the gap in days
#: beyond (4 hours at a post every 2 days, 9 at one every 3): the square root alone would
#: poll a daily feed every 4 to 7 hours, and a daily feed's posts are the ones a reader
#: waits for most (a slower feed's are few; a faster one is polled often anyway). Squared,
#: not a step at one day, so that a feed posting about daily does not jump between an
#: hour and six with a post more or less this month. In bench/politeness.py (seed 1) this
#: cap took the p95 delay from 117 minutes to under CommaFeed's 51.5.
ACTIVE_CAP_FACTOR = 4.0
#: A feed known for less than this, with fewer than two dated posts, has no rate yet: it
#: keeps the starting interval (one post an hour ago says nothing about the next one).
MIN_OBSERVED = timedelta(days=1)
#: A silence since the newest post counts as the feed's gap (it has slowed down or
#: stopped) only once it is longer than this. Shorter ones are the feed's own rhythm: a
#: night, or the weekend of a publisher who posts on weekdays (two and a half days). Made
#: to count from the first hours of silence, as it was, it slowed every busy feed for the
#: night and most daily ones between their posts, and their first posts after that waited
#: longest: in bench/politeness.py (seed 1) 122,000 posts of fast feeds and 98,000 of
#: daily ones later than 51.5 minutes, when the p95 allows 103,000 late in all.
QUIET_AFTER = timedelta(days=3)
#: Quiet hours: hours of the day (UTC) in a run of at least QUIET_RUN_HOURS in a row
#: (across midnight) in which none of a feed's posts of the RATE_WINDOW was published,
#: when it has at least QUIET_MIN_POSTS with a publication date. Publishers sleep: a feed
#: posting in its waking hours is not polled through its night. A poll made inside such a
#: run plans the next one at the run's end; the first poll due inside it is kept (it sees
#: the last posts of the day). Three hours in a row, so that an hour without a post by
#: chance (a daily feed with 20 posts in 16 waking hours leaves ~1 of them empty) is no
#: night; 20 posts, so that a weekly feed's few posts make no night at all; dated posts
#: only, since an undated one is dated when rssd stored it, which the quiet hours
#: themselves decide. In bench/politeness.py (seed 1) this saved ~20,000 of ~83,000
#: requests a day at the same delays.
QUIET_RUN_HOURS = 3
QUIET_MIN_POSTS = 20
#: ...published in at least this many different hours of the day: a feed whose dates have
#: no time (``2026-01-05``, read as midnight) or that posts at one set minute has all its
#: posts in one hour, which says nothing of when its next post comes; without this it
#: would be polled twice a day.
QUIET_MIN_HOURS = 4


class Reason(StrEnum):
    """Why a source's next fetch is when it is (``rssd status`` shows it)."""

    FIXED = "fixed"  # interval_minutes set on the feed
    START = "start"  # no posting history yet: the global interval_minutes
    POSTING_RATE = "posting rate"
    HINT = "publisher hint"  # Retry-After, Cache-Control, Expires, <ttl>, sy:updatePeriod
    BACKOFF = "backoff"  # consecutive failures
    HOST_PAUSED = "host paused"  # a 429/503 with Retry-After paused the whole host
    QUIET_HOURS = "quiet hours"  # the feed's publisher does not post at this time of day


#: New sources are spread over this much time (at most their interval) so that a config
#: with hundreds of new feeds does not fire all of them in the same second.
NEW_SOURCE_SPREAD = timedelta(seconds=10)


class History(Struct, frozen=True):
    """What the scheduler needs to know of a source's past fetches."""

    ended_at: datetime | None = None  # end of the latest job; None: never fetched
    failures: int = 0  # consecutive failures since the last success; interrupted excluded
    interrupted: bool = False  # the latest job ended ``interrupted``
    gone: bool = False  # the latest job got 410 and the config entry did not change since


class Hints(Struct, frozen=True):
    """What the latest response asked of us."""

    http_status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    ttl_minutes: int | None = None


class Policy(Struct, frozen=True):
    interval: timedelta
    max_backoff: timedelta = DEFAULT_MAX_BACKOFF
    max_hint: timedelta = DEFAULT_MAX_HINT
    reason: Reason = Reason.FIXED  # why ``interval`` is what it is
    quiet: frozenset[int] = frozenset()  # the feed's quiet hours (UTC hours of the day)
    #: The feed's max interval: the quiet hours never make it wait longer (None: no cap).
    ceiling: timedelta | None = None


class Activity(Struct, frozen=True):
    """A feed's posts over the last RATE_WINDOW, as its own history in the database says
    (a post's time: its publication date, else when rssd stored it)."""

    posts: int = 0  # dated within the window
    span: timedelta = timedelta(0)  # from the oldest of them to the newest
    silence: timedelta | None = None  # since the newest (None: none in the window)
    known: timedelta = timedelta(0)  # since rssd first synced the feed
    #: Of them, those with a publication date, per UTC hour of the day (0-23); empty when
    #: unknown.
    hours: tuple[int, ...] = ()


def activity_of(
    count: int,
    oldest: datetime | None,
    newest: datetime | None,
    now: datetime,
    known_since: datetime,
    *,
    hours: tuple[int, ...] = (),
) -> Activity:
    """An Activity from the posts dated within RATE_WINDOW (count, oldest, newest date,
    the published ones per hour of the day)."""
    return Activity(
        posts=count,
        span=(newest - oldest) if oldest and newest else timedelta(0),
        silence=(now - newest) if newest else None,
        known=max(timedelta(0), now - known_since),
        hours=hours,
    )


def quiet_hours(hours: tuple[int, ...]) -> frozenset[int]:
    """The hours of the day in runs of at least QUIET_RUN_HOURS without a published post
    (midnight wraps), from ``hours``' 24 counts; none below QUIET_MIN_POSTS posts, or
    with posts in fewer than QUIET_MIN_HOURS hours."""
    if len(hours) != 24 or sum(hours) < max(QUIET_MIN_POSTS, 1):
        return frozenset()
    if sum(1 for count in hours if count) < QUIET_MIN_HOURS:
        return frozenset()
    start = next(h for h in range(24) if hours[h])  # a run never starts before it
    quiet: set[int] = set()
    run: list[int] = []
    for step in range(1, 25):
        hour = (start + step) % 24
        if not hours[hour]:
            run.append(hour)
            continue
        if len(run) >= QUIET_RUN_HOURS:
            quiet.update(run)
        run = []
    return frozenset(quiet)


def quiet_end(quiet: frozenset[int], at: datetime) -> datetime | None:
    """The end of the run of quiet hours ``at`` lies in (the start of the next hour that
    is not quiet); None when ``at``'s hour is not quiet. A naive ``at`` is UTC, as
    ``rssd.clock.to_iso`` reads it."""
    if not quiet:
        return None
    naive = at.tzinfo is None
    utc = at.replace(tzinfo=UTC) if naive else at.astimezone(UTC)
    hour = utc.replace(minute=0, second=0, microsecond=0)
    if hour.hour not in quiet:
        return None
    while hour.hour in quiet:  # at most 20 steps: QUIET_MIN_HOURS hours are posted in
        hour += timedelta(hours=1)
    return hour.replace(tzinfo=None) if naive else hour


def posting_gap(activity: Activity) -> timedelta | None:
    """The feed's typical gap between posts; None while there is too little to tell.

    The time the feed was seen over, per post: the longer of the time watched (since rssd
    first synced it, at most RATE_WINDOW) and the time since its oldest post in the window
    (a first fetch's document shows some history), divided by the posts. Not the mean gap
    between the posts themselves: publishers post in bursts, and a monthly feed whose
    only three posts this month came minutes apart would look like one posting every few
    minutes. A silence longer than QUIET_AFTER, and longer than that, is the gap instead
    (the feed has slowed down or stopped). With fewer than two posts, nothing until the
    feed has been watched for MIN_OBSERVED."""
    silence = activity.silence or timedelta(0)
    watched = min(activity.known, RATE_WINDOW)
    if activity.posts < 2 and watched < MIN_OBSERVED:
        return None
    seen = max(watched, activity.span + silence) if activity.posts else watched
    gap = seen / max(activity.posts, 1)
    return max(gap, silence) if silence > QUIET_AFTER else gap


def adaptive_interval(
    activity: Activity | None, start: timedelta, low: timedelta, high: timedelta
) -> tuple[timedelta, Reason]:
    """The interval of a feed without a fixed one: ``sqrt(gap * PIVOT_FACTOR * low)``, at
    most ``ACTIVE_CAP_FACTOR * low * max(1, gap in days) ** 2``, clamped to [low, high];
    the ``start`` interval (clamped too) while the gap is unknown."""
    gap = posting_gap(activity) if activity is not None else None
    if gap is None:
        return min(max(start, low), high), Reason.START
    seconds = math.sqrt(gap.total_seconds() * PIVOT_FACTOR * low.total_seconds())
    days = max(1.0, gap / timedelta(days=1))
    seconds = min(seconds, ACTIVE_CAP_FACTOR * low.total_seconds() * days * days)
    return min(max(timedelta(seconds=seconds), low), high), Reason.POSTING_RATE


def policy_of(source: Source, activity: Activity | None = None) -> Policy:
    """A source's policy: its own interval when fixed, else the adaptive one (the start
    interval while ``activity`` is unknown)."""
    if source.interval_fixed:
        return Policy(interval=timedelta(minutes=source.interval_minutes), reason=Reason.FIXED)
    interval, reason = adaptive_interval(
        activity,
        timedelta(minutes=source.interval_minutes),
        timedelta(minutes=source.min_interval_minutes),
        timedelta(minutes=source.max_interval_minutes),
    )
    quiet: frozenset[int] = frozenset()
    if activity is not None and reason is Reason.POSTING_RATE:
        quiet = quiet_hours(activity.hours)
    return Policy(
        interval=interval,
        reason=reason,
        quiet=quiet,
        ceiling=timedelta(minutes=source.max_interval_minutes),
    )


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


def _hinted(policy: Policy, now: datetime, hints: Hints | None) -> timedelta | None:
    asked = requested_delay(hints, now) if hints else None
    return min(asked, policy.max_hint) if asked is not None else None


def planned_delay(
    history: History, policy: Policy, now: datetime, hints: Hints | None = None
) -> tuple[timedelta, Reason]:
    """The wait after the latest job before jitter, and what decided it: the interval,
    stretched by a backoff, then by the publisher when it asks for longer (a tie goes to
    the publisher: its wait is not jittered below what it asked), then to the end of the
    feed's quiet hours when the job ended inside them."""
    delay, reason = policy.interval, policy.reason
    backed_off = backoff(policy.interval, history.failures, policy.max_backoff)
    if backed_off > delay:
        delay, reason = backed_off, Reason.BACKOFF
    hinted = _hinted(policy, now, hints)
    if hinted is not None and hinted >= delay and hinted > policy.interval:
        delay, reason = hinted, Reason.HINT
    ended = history.ended_at or now
    end = quiet_end(policy.quiet, ended)
    if end is not None:
        wait = end - ended if policy.ceiling is None else min(end - ended, policy.ceiling)
        if wait > delay:
            delay, reason = wait, Reason.QUIET_HOURS
    return delay, reason


def jittered(delay: timedelta, reason: Reason, jitter: float) -> timedelta:
    """+-JITTER around the delay; a backoff only downwards, by up to BACKOFF_JITTER."""
    if reason is Reason.BACKOFF:
        return delay * (1 - BACKOFF_JITTER * jitter)
    return delay * (1 - JITTER + 2 * JITTER * jitter)


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
    delay, reason = planned_delay(history, policy, now, hints)
    if reason is Reason.QUIET_HOURS:  # spread after the run's end: by up to a tenth of the interval
        return history.ended_at + delay + policy.interval * (JITTER * jitter)
    wait = jittered(delay, reason, jitter)
    if reason is Reason.BACKOFF:  # spread downwards, but never below what was asked
        wait = max(wait, policy.interval, _hinted(policy, now, hints) or timedelta(0))
    return history.ended_at + wait


#: A permanent redirect seen this many times in a row makes us fetch the new URL directly.
MOVED_AFTER = 2


class Ending(Struct, frozen=True):
    """How an attempt ended, as far as the next one is concerned."""

    completed: bool
    interrupted: bool = False
    gone: bool = False
    hints: Hints | None = None
    moved_permanently: bool = False
    final_url: str | None = None


class Carried(Struct, frozen=True):
    """What the schedule remembers between a source's jobs."""

    failures: int = 0  # consecutive failures, ``interrupted`` excluded
    fetch_url: str | None = None  # the URL it moved to (None: the configured one)
    moved_seen: int = 0  # permanent redirects to the same place in a row


class Plan(Struct, frozen=True):
    due: datetime | None  # None: gone, not fetched again until the config entry changes
    carried: Carried
    moved_now: bool  # fetch_url changed by this ending: worth a log line
    interval: timedelta | None = None  # the wait planned, before jitter
    reason: Reason | None = None  # what decided it


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
    interval, reason = (None, None)
    if due is not None and not ending.interrupted:
        interval, reason = planned_delay(history, policy, now, ending.hints)
    return Plan(due, Carried(failures, fetch_url, moved_seen), moved_now, interval, reason)
