"""plan_next: what a job's ending decides for the source's next job. Pure, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rssd.daemon.schedule import (
    MOVED_AFTER,
    Carried,
    Ending,
    Hints,
    Plan,
    Policy,
    Reason,
    plan_next,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
URL = "http://a.example/feed"
NEW = "http://b.example/feed"
MID = 0.5  # the jitter that adds nothing


def plan(before: Carried, ending: Ending) -> Plan:
    return plan_next(URL, before, ending, Policy(interval=HOUR), now=NOW, jitter=MID)


CASES = [
    ("success resets failures", Carried(failures=3), Ending(completed=True), NOW + HOUR,
     Carried(failures=0), False),
    # 4 h, jittered downwards (at MID, by a quarter: BACKOFF_JITTER * MID).
    ("a failure backs off", Carried(failures=2), Ending(completed=False), NOW + 3 * HOUR,
     Carried(failures=3), False),
    ("interrupted: at once, not counted", Carried(failures=2),
     Ending(completed=False, interrupted=True), NOW, Carried(failures=2), False),
    ("gone: not scheduled", Carried(), Ending(completed=False, gone=True), None,
     Carried(failures=1), False),
    ("Retry-After stretches the interval", Carried(),
     Ending(completed=False, hints=Hints(http_status=429, headers={"Retry-After": "10800"})),
     NOW + 3 * HOUR, Carried(failures=1), False),
    ("max-age stretches a success", Carried(),
     Ending(completed=True, hints=Hints(200, {"Cache-Control": "max-age=7200"})),
     NOW + 2 * HOUR, Carried(), False),
    ("ttl stretches a success", Carried(), Ending(completed=True, hints=Hints(ttl_minutes=180)),
     NOW + 3 * HOUR, Carried(), False),
    ("first permanent redirect: counted", Carried(),
     Ending(completed=True, moved_permanently=True, final_url=NEW), NOW + HOUR,
     Carried(moved_seen=1), False),
    ("second one: fetch the new URL", Carried(moved_seen=MOVED_AFTER - 1),
     Ending(completed=True, moved_permanently=True, final_url=NEW), NOW + HOUR,
     Carried(fetch_url=NEW, moved_seen=MOVED_AFTER), True),
    ("the moved URL answers directly: kept", Carried(fetch_url=NEW, moved_seen=2),
     Ending(completed=True, final_url=NEW), NOW + HOUR,
     Carried(fetch_url=NEW, moved_seen=2), False),
    ("the moved URL fails: back to the configured one", Carried(fetch_url=NEW, moved_seen=2),
     Ending(completed=False), NOW + HOUR, Carried(failures=1), False),
    ("a redirect that stops: count reset", Carried(moved_seen=1),
     Ending(completed=True, final_url=URL), NOW + HOUR, Carried(), False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("before", "ending", "due", "carried", "moved_now"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_plan_next(
    before: Carried, ending: Ending, due: datetime | None, carried: Carried, moved_now: bool
) -> None:
    planned = plan(before, ending)
    assert (planned.due, planned.carried, planned.moved_now) == (due, carried, moved_now)


@pytest.mark.parametrize(
    ("ending", "failures", "expected"),
    [
        (Ending(completed=True), 0, (HOUR, Reason.FIXED)),
        (Ending(completed=False), 2, (4 * HOUR, Reason.BACKOFF)),
        (Ending(completed=True, hints=Hints(ttl_minutes=180)), 0, (3 * HOUR, Reason.HINT)),
        (Ending(completed=False, interrupted=True), 2, (None, None)),
        (Ending(completed=False, gone=True), 0, (None, None)),
    ],
)
def test_a_plan_says_its_interval_and_why(
    ending: Ending, failures: int, expected: tuple[timedelta | None, Reason | None]
) -> None:
    planned = plan(Carried(failures=failures), ending)
    assert (planned.interval, planned.reason) == expected
