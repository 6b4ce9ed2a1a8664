"""The scheduler's maths, table-driven on the pure functions: no sleeping, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rssd.daemon.schedule import (
    DEFAULT_MAX_BACKOFF,
    NEW_SOURCE_SPREAD,
    Hints,
    History,
    Policy,
    backoff,
    next_due,
    requested_delay,
)

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
        # Failures back off.
        (History(ended_at=ENDED, failures=3), None, MID, ENDED + 4 * HOUR),
        (History(ended_at=ENDED, failures=40), None, MID, ENDED + 24 * HOUR),
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
