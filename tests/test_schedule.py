"""The scheduler's maths, table-driven on the pure functions: no sleeping, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from msgspec.structs import replace

from rssd.daemon import schedule
from rssd.daemon.schedule import (
    DEFAULT_MAX_BACKOFF,
    NEW_SOURCE_SPREAD,
    Activity,
    Hints,
    History,
    Policy,
    Reason,
    adaptive_interval,
    backoff,
    next_due,
    planned_delay,
    policy_of,
    quiet_end,
    quiet_hours,
    requested_delay,
)
from rssd.models.dto import Source

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
MID = 0.5  # the jitter value that adds nothing: 1 - 0.1 + 0.2 * 0.5 == 1


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        (0, HOUR),
        (1, HOUR),
        (2, 2 * HOUR),
        (3, 4 * HOUR),
        (5, 16 * HOUR),
        (6, 24 * HOUR),  # capped
        (60, 24 * HOUR),  # still capped, never overflows, never gives up
    ],
)
def test_backoff_doubles_from_the_interval_and_is_capped(
    failures: int, expected: timedelta
) -> None:
    assert backoff(HOUR, failures, DEFAULT_MAX_BACKOFF) == expected


def test_backoff_never_shortens_an_interval_longer_than_the_cap() -> None:
    assert backoff(48 * HOUR, 3, DEFAULT_MAX_BACKOFF) == 48 * HOUR


@pytest.mark.parametrize(
    ("hints", "expected"),
    [
        (Hints(), None),
        (Hints(http_status=429, headers={"Retry-After": "7200"}), 2 * HOUR),
        (Hints(http_status=503, headers={"retry-after": "60"}), timedelta(seconds=60)),
        # Retry-After only counts on 429/503.
        (Hints(http_status=200, headers={"Retry-After": "7200"}), None),
        (Hints(http_status=200, headers={"Cache-Control": "max-age=7200"}), 2 * HOUR),
        (
            Hints(http_status=200, headers={"Expires": "Sun, 29 Nov 2026 15:00:00 GMT"}),
            3 * HOUR,
        ),
        # max-age wins over Expires.
        (
            Hints(
                http_status=200,
                headers={
                    "Cache-Control": "max-age=60",
                    "Expires": "Sun, 29 Nov 2026 15:00:00 GMT",
                },
            ),
            timedelta(seconds=60),
        ),
        (Hints(http_status=200, ttl_minutes=180), 3 * HOUR),
        # The longest request wins.
        (
            Hints(http_status=200, headers={"Cache-Control": "max-age=60"}, ttl_minutes=30),
            30 * timedelta(minutes=1),
        ),
    ],
)
def test_requested_delay(hints: Hints, expected: timedelta | None) -> None:
    assert requested_delay(hints, NOW) == expected


ENDED = NOW - timedelta(minutes=10)
POLICY = Policy(interval=HOUR)


@pytest.mark.parametrize(
    ("history", "hints", "jitter", "expected"),
    [
        # Never fetched: due now, spread over at most NEW_SOURCE_SPREAD by the jitter.
        (History(), None, 0.0, NOW),
        (History(), None, 0.5, NOW + NEW_SOURCE_SPREAD / 2),
        # Fetched fine: end + interval, +-10% jitter.
        (History(ended_at=ENDED), None, MID, ENDED + HOUR),
        (History(ended_at=ENDED), None, 0.0, ENDED + HOUR * 0.9),
        (History(ended_at=ENDED), None, 0.999999, ENDED + HOUR * (0.9 + 0.2 * 0.999999)),
        # Failures back off, jittered downwards only, by up to half (BACKOFF_JITTER).
        (History(ended_at=ENDED, failures=3), None, 0.0, ENDED + 4 * HOUR),
        (History(ended_at=ENDED, failures=3), None, MID, ENDED + 3 * HOUR),
        (History(ended_at=ENDED, failures=40), None, 0.0, ENDED + 24 * HOUR),
        # Interrupted (the daemon's fault): due at once, whatever the failures before.
        (History(ended_at=ENDED, failures=3, interrupted=True), None, MID, NOW),
        # 410 Gone: not due at all.
        (History(ended_at=ENDED, gone=True), None, MID, None),
        # The server asks for longer: stretched...
        (
            History(ended_at=ENDED, failures=1),
            Hints(http_status=429, headers={"Retry-After": "10800"}),
            MID,
            ENDED + 3 * HOUR,
        ),
        (History(ended_at=ENDED), Hints(http_status=200, ttl_minutes=120), MID, ENDED + 2 * HOUR),
        # ... but capped at 24 h ...
        (
            History(ended_at=ENDED),
            Hints(http_status=200, headers={"Cache-Control": "max-age=9999999"}),
            MID,
            ENDED + 24 * HOUR,
        ),
        # ... and never shorter than our own interval.
        (
            History(ended_at=ENDED),
            Hints(http_status=200, headers={"Cache-Control": "max-age=60"}),
            MID,
            ENDED + HOUR,
        ),
    ],
)
def test_next_due(
    history: History, hints: Hints | None, jitter: float, expected: datetime | None
) -> None:
    assert next_due(history, POLICY, NOW, jitter, hints) == expected


def test_jitter_spreads_sources_that_ended_together() -> None:
    dues = {next_due(History(ended_at=ENDED), POLICY, NOW, j / 10) for j in range(10)}
    assert len(dues) == 10
    assert all(d is not None and ENDED + 0.9 * HOUR <= d < ENDED + 1.1 * HOUR for d in dues)


MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
LOW, HIGH, START = 15 * MINUTE, 1440 * MINUTE, 60 * MINUTE
OLD = 400 * DAY  # a feed rssd has known for longer than the rate window


@pytest.mark.parametrize(
    ("activity", "expected"),
    [
        # No history at all, or too little to tell: the starting interval.
        (None, (START, Reason.START)),
        (Activity(posts=0, known=2 * HOUR), (START, Reason.START)),
        (Activity(posts=1, silence=HOUR, known=2 * HOUR), (START, Reason.START)),
        # The gap is the time seen per post (30 days for a feed known long), and the
        # interval sqrt(gap * 2 h): every 15 min -> ~42 min; 4 posts a month -> ~19 h.
        (
            Activity(posts=2880, span=30 * DAY - 15 * MINUTE, silence=5 * MINUTE, known=OLD),
            (0.7071068 * HOUR, Reason.POSTING_RATE),
        ),
        (
            Activity(posts=4, span=21 * DAY, silence=DAY, known=OLD),
            (18.973666 * HOUR, Reason.POSTING_RATE),
        ),
        # Daily: sqrt(24 h * 2 h) would be ~6.9 h; a feed posting at least daily is polled
        # at least hourly (ACTIVE_CAP_FACTOR * 15 min).
        (Activity(posts=30, span=29 * DAY, silence=HOUR, known=OLD), (HOUR, Reason.POSTING_RATE)),
        # Beyond a day, the cap grows with the square of the gap in days: every 2 days ->
        # at most 4 h (sqrt would say ~9.8 h); every 3.6 days or more, sqrt is the shorter.
        (
            Activity(posts=15, span=29 * DAY, silence=HOUR, known=OLD),
            (4 * HOUR, Reason.POSTING_RATE),
        ),
        (
            Activity(posts=5, span=29 * DAY, silence=HOUR, known=OLD),
            (16.9705627 * HOUR, Reason.POSTING_RATE),
        ),
        # A burst is not a rate: three posts minutes apart, two hours ago, the only ones this
        # month, are a post every 10 days (sqrt(240 h * 2 h)), not every 5 minutes.
        (
            Activity(posts=3, span=10 * MINUTE, silence=2 * HOUR, known=OLD),
            (21.9089023 * HOUR, Reason.POSTING_RATE),
        ),
        # A feed just added, its first document showing 50 posts over three days: 73 h
        # seen (not the minute rssd has known it) per post -> sqrt(1.46 h * 2 h) = 1.7 h,
        # capped at an hour (it posts more than daily).
        (Activity(posts=50, span=3 * DAY, silence=HOUR, known=MINUTE), (HOUR, Reason.POSTING_RATE)),
        # Faster than every ~1.9 min: the floor.
        (
            Activity(posts=30000, span=30 * DAY, silence=MINUTE, known=OLD),
            (LOW, Reason.POSTING_RATE),
        ),
        # Quiet for a night or a weekend (up to QUIET_AFTER): the feed's own rhythm, no
        # slower than its rate says.
        (
            Activity(posts=2880, span=27 * DAY, silence=3 * DAY, known=OLD),
            (0.7071068 * HOUR, Reason.POSTING_RATE),
        ),
        # Quiet for longer: the silence since the newest post counts as the gap.
        (
            Activity(posts=2880, span=26 * DAY, silence=4 * DAY, known=OLD),
            (13.8564065 * HOUR, Reason.POSTING_RATE),
        ),
        # Nothing in 30 days (dead, or monthly): the ceiling.
        (Activity(posts=0, known=OLD), (HIGH, Reason.POSTING_RATE)),
        (Activity(posts=1, silence=20 * DAY, known=OLD), (HIGH, Reason.POSTING_RATE)),
        # Known for two days with one post: watched two days -> sqrt(48 h * 2 h) = 9.8 h,
        # capped at 4 h (a post every two days).
        (Activity(posts=1, silence=HOUR, known=2 * DAY), (4 * HOUR, Reason.POSTING_RATE)),
    ],
)
def test_adaptive_interval(activity: Activity | None, expected: tuple[timedelta, Reason]) -> None:
    interval, reason = adaptive_interval(activity, START, LOW, HIGH)
    assert reason is expected[1]
    assert abs(interval - expected[0]) < timedelta(seconds=1)


def test_the_start_interval_is_clamped_too() -> None:
    assert adaptive_interval(None, 5 * MINUTE, LOW, HIGH) == (LOW, Reason.START)
    assert adaptive_interval(None, 2 * DAY, LOW, HIGH) == (HIGH, Reason.START)


def test_a_fixed_interval_ignores_the_posting_rate() -> None:
    busy = Activity(posts=20000, span=30 * DAY, silence=MINUTE, known=OLD)
    source = Source(1, "http://a.example/", None, 60, 30.0, True, "", "", interval_fixed=True)
    policy = policy_of(source, busy)
    assert (policy.interval, policy.reason) == (HOUR, Reason.FIXED)
    adaptive = policy_of(replace(source, interval_fixed=False, min_interval_minutes=20), busy)
    assert (adaptive.interval, adaptive.reason) == (20 * MINUTE, Reason.POSTING_RATE)


@pytest.mark.parametrize(
    ("failures", "hints", "expected"),
    [
        (0, None, (30 * MINUTE, Reason.POSTING_RATE)),
        (3, None, (2 * HOUR, Reason.BACKOFF)),  # backoff still applies
        (0, Hints(http_status=200, ttl_minutes=20), (30 * MINUTE, Reason.POSTING_RATE)),
        (0, Hints(http_status=200, ttl_minutes=90), (90 * MINUTE, Reason.HINT)),  # longer wins
        (3, Hints(http_status=429, headers={"Retry-After": "10800"}), (3 * HOUR, Reason.HINT)),
        (3, Hints(http_status=429, headers={"Retry-After": "60"}), (2 * HOUR, Reason.BACKOFF)),
    ],
)
def test_planned_delay_and_its_reason(
    failures: int, hints: Hints | None, expected: tuple[timedelta, Reason]
) -> None:
    policy = Policy(interval=30 * MINUTE, reason=Reason.POSTING_RATE)
    history = History(ended_at=ENDED, failures=failures)
    assert planned_delay(history, policy, NOW, hints) == expected


def test_the_curve_moves_with_the_minimum() -> None:
    """The pivot is PIVOT_FACTOR minimum intervals: with a minimum of a second (a test
    farm), a feed posting every second is polled every sqrt(8) s, a silent one at the
    maximum."""
    second = timedelta(seconds=1)
    fast = Activity(posts=20, span=19 * second, silence=0.5 * second, known=20 * second)
    interval, reason = adaptive_interval(fast, START, second, 30 * second)
    assert reason is Reason.POSTING_RATE
    assert abs(interval.total_seconds() - 8**0.5) < 1e-6
    silent = Activity(posts=2, span=HOUR, silence=10 * DAY, known=OLD)
    assert adaptive_interval(silent, START, second, 30 * second) == (
        30 * second,
        Reason.POSTING_RATE,
    )


def test_feeds_that_failed_together_come_back_spread_out() -> None:
    """A host down for everyone: ten feeds failing in the same second, their third failure
    in a row (4 h backoff), come back over two hours, not in one burst, and none sooner
    than its interval."""
    history = History(ended_at=ENDED, failures=3)
    dues = sorted(
        due for j in range(10) if (due := next_due(history, POLICY, NOW, j / 10)) is not None
    )
    assert len(set(dues)) == 10
    assert dues[-1] - dues[0] >= timedelta(hours=1.5)
    assert dues[0] >= ENDED + POLICY.interval


def _hours(**posted: int) -> tuple[int, ...]:
    """24 counts, the hours named ``h9=3`` set, every other hour without posts."""
    counts = [0] * 24
    for name, count in posted.items():
        counts[int(name[1:])] = count
    return tuple(counts)


AWAKE = tuple(2 if 7 <= h < 23 else 0 for h in range(24))  # 32 posts, 07:00 to 22:59


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        # Posting 07:00-22:59 for a month: the eight hours from 23:00 (across midnight).
        (AWAKE, {23, 0, 1, 2, 3, 4, 5, 6}),
        # Fewer than QUIET_MIN_POSTS (20) dated posts: too few to tell a night.
        (tuple(1 if 7 <= h < 23 else 0 for h in range(24)), set()),
        # Unknown hours: none.
        ((), set()),
        # An hour or two without a post by chance is no night (runs under QUIET_RUN_HOURS).
        (tuple(0 if h in {3, 10, 11} else 2 for h in range(24)), set()),
        # A run of exactly three is; one post in the small hours splits the night.
        (
            tuple(0 if h in {1, 2, 3, 5, 6} else 2 for h in range(24)),
            {1, 2, 3},
        ),
        # One post a day, always at 09:xx, or dates without a time (read as midnight): in
        # fewer than QUIET_MIN_HOURS (4) hours, which says nothing of the next post.
        (_hours(h9=30), set()),
        (_hours(h0=40), set()),
        # Posts in four hours, 08-11: the other twenty are quiet.
        (_hours(h8=5, h9=5, h10=5, h11=5), set(range(24)) - {8, 9, 10, 11}),
        # Quiet from 21:00 to midnight and none after: the run ends at midnight's posts.
        (tuple(0 if h >= 21 else 2 for h in range(24)), {21, 22, 23}),
    ],
)
def test_quiet_hours(hours: tuple[int, ...], expected: set[int]) -> None:
    assert quiet_hours(hours) == expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2026, 11, 29, 23, 40, tzinfo=UTC), datetime(2026, 11, 30, 7, 0, tzinfo=UTC)),
        (datetime(2026, 11, 30, 3, 5, tzinfo=UTC), datetime(2026, 11, 30, 7, 0, tzinfo=UTC)),
        (datetime(2026, 11, 30, 6, 59, tzinfo=UTC), datetime(2026, 11, 30, 7, 0, tzinfo=UTC)),
        (datetime(2026, 11, 30, 7, 0, tzinfo=UTC), None),  # awake
        (datetime(2026, 11, 30, 22, 59, tzinfo=UTC), None),
    ],
)
def test_quiet_end_is_the_start_of_the_next_hour_posted_in(
    at: datetime, expected: datetime | None
) -> None:
    assert quiet_end(quiet_hours(AWAKE), at) == expected


QUIET = Policy(interval=HOUR, reason=Reason.POSTING_RATE, quiet=frozenset(quiet_hours(AWAKE)))


@pytest.mark.parametrize(
    ("ended", "failures", "hints", "expected"),
    [
        # A poll in the afternoon: the interval.
        (datetime(2026, 11, 29, 15, 0, tzinfo=UTC), 0, None, (HOUR, Reason.POSTING_RATE)),
        # The last poll of the day, 22:30: the next one is due at 23:30, in the night, and
        # kept (it sees the posts of the day's last half hour).
        (datetime(2026, 11, 29, 22, 30, tzinfo=UTC), 0, None, (HOUR, Reason.POSTING_RATE)),
        # A poll in the night: the next one at the night's end, 07:00.
        (
            datetime(2026, 11, 29, 23, 35, tzinfo=UTC),
            0,
            None,
            (timedelta(hours=7, minutes=25), Reason.QUIET_HOURS),
        ),
        # A poll at 06:30: the interval is longer than what is left of the night.
        (datetime(2026, 11, 30, 6, 30, tzinfo=UTC), 0, None, (HOUR, Reason.POSTING_RATE)),
        # A longer backoff or publisher's wait still wins.
        (datetime(2026, 11, 30, 1, 0, tzinfo=UTC), 6, None, (24 * HOUR, Reason.BACKOFF)),
        (
            datetime(2026, 11, 30, 1, 0, tzinfo=UTC),
            0,
            Hints(http_status=200, ttl_minutes=720),
            (12 * HOUR, Reason.HINT),
        ),
    ],
)
def test_a_poll_in_the_quiet_hours_plans_the_next_at_their_end(
    ended: datetime, failures: int, hints: Hints | None, expected: tuple[timedelta, Reason]
) -> None:
    history = History(ended_at=ended, failures=failures)
    assert planned_delay(history, QUIET, ended, hints) == expected


def test_polls_after_the_quiet_hours_are_spread_after_their_end_never_before() -> None:
    ended = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    dues = [next_due(History(ended_at=ended), QUIET, ended, j / 10) for j in range(10)]
    morning = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert all(due is not None and morning <= due < morning + 0.1 * HOUR for due in dues)
    assert len(set(dues)) == 10


def test_only_a_posting_rate_has_quiet_hours() -> None:
    awake = Activity(posts=32, span=29 * DAY, silence=HOUR, known=OLD, hours=AWAKE)
    source = Source(1, "http://a.example/", None, 60, 30.0, True, "", "", interval_fixed=False)
    assert policy_of(source, awake).quiet == quiet_hours(AWAKE)
    assert policy_of(replace(source, interval_fixed=True), awake).quiet == frozenset()
    new = replace(awake, posts=1, known=HOUR)  # too little history: the start interval
    assert policy_of(source, new).reason is Reason.START
    assert policy_of(source, new).quiet == frozenset()


def test_no_posts_no_quiet_hours_whatever_the_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    """A night needs posts around it: with none (or the minimum set to 0, as
    bench/politeness.py --quiet-min-posts 0 may), no hour is quiet."""
    monkeypatch.setattr(schedule, "QUIET_MIN_POSTS", 0)
    assert quiet_hours((0,) * 24) == frozenset()
    assert quiet_hours(_hours(h1=1, h2=1, h3=1, h4=1)) == set(range(24)) - {1, 2, 3, 4}


def test_the_quiet_hours_never_wait_longer_than_the_feeds_max_interval() -> None:
    """An operator who set max_interval_minutes = 30 on a feed gets a poll every 30 minutes
    at most, through the night too."""
    ended = datetime(2026, 11, 29, 23, 35, tzinfo=UTC)
    capped = replace(QUIET, interval=20 * MINUTE, ceiling=30 * MINUTE)
    assert planned_delay(History(ended_at=ended), capped, ended) == (
        30 * MINUTE,
        Reason.QUIET_HOURS,
    )
    source = Source(1, "http://a.example/", None, 60, 30.0, True, "", "", interval_fixed=False)
    assert policy_of(replace(source, max_interval_minutes=30)).ceiling == 30 * MINUTE


def test_quiet_end_keeps_a_naive_time_naive() -> None:
    """rssd's clocks are aware; a naive time is read as UTC (as rssd.clock.to_iso reads
    it), and the end comes back naive, so that the two can be subtracted."""
    quiet = quiet_hours(AWAKE)
    assert quiet_end(quiet, datetime(2026, 11, 30, 3, 5)) == datetime(2026, 11, 30, 7, 0)
    assert quiet_end(frozenset(), datetime(2026, 11, 30, 3, 5)) is None
