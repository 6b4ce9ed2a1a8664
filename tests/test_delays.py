"""The delays servers ask for (Retry-After, max-age): one reader for feeds and webhooks,
table-driven, huge values included (they once raised OverflowError)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rssd.clock import parse_iso, utcnow
from rssd.daemon.pipeline import Pipeline
from rssd.daemon.reconcile import reconcile
from rssd.daemon.schedule import Hints, History, Policy, next_due, requested_delay
from rssd.daemon.startup import daemon_session
from rssd.fetch.fetcher import Fetcher
from rssd.models.delays import HINT_CAP, capped_seconds, max_age, retry_after
from rssd.repo.claims import ClaimRepo
from rssd.repo.sources import SourceRepo
from rssd.webhooks.rules import Answer, Outcome, decide
from tests.conftest import FeedServer, rss
from tests.support.config import make_config

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
HUGE = "99999999999999"  # more seconds than timedelta holds
BODY = rss([{"guid": "urn:1", "title": "One"}])


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("0", timedelta(0)),
        ("000", timedelta(0)),
        ("120", timedelta(seconds=120)),
        ("86400", HINT_CAP),
        ("86401", HINT_CAP),
        ("0000000000000000000090", timedelta(seconds=90)),
        (HUGE, HINT_CAP),
        ("9" * 5000, HINT_CAP),  # past int()'s 4300-digit limit
    ],
)
def test_capped_seconds(digits: str, expected: timedelta) -> None:
    assert capped_seconds(digits) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", timedelta(seconds=120)),
        (" 0 ", timedelta(0)),
        ("30", timedelta(seconds=30)),
        (HUGE, HINT_CAP),
        ("9" * 5000, HINT_CAP),
        ("Sun, 29 Nov 2026 12:30:00 GMT", timedelta(minutes=30)),
        ("Sun, 29 Nov 2026 11:00:00 GMT", timedelta(0)),  # in the past: no extra wait
        ("Fri, 31 Dec 9999 23:59:59 GMT", HINT_CAP),
        ("\u0661\u0662", None),  # Arabic-Indic digits are not HTTP digits
        ("soon", None),
        ("x", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_or_http_date(value: str | None, expected: timedelta | None) -> None:
    assert retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("max-age=600", timedelta(seconds=600)),
        ("public, max-age=3600, must-revalidate", timedelta(hours=1)),
        ('s-maxage=5, max-age="90"', timedelta(seconds=90)),
        (f"max-age={HUGE}", HINT_CAP),
        ("max-age=" + "9" * 5000, HINT_CAP),
        ("no-cache, max-age=600", None),
        ("private", None),
        (None, None),
    ],
)
def test_max_age(header: str | None, expected: timedelta | None) -> None:
    assert max_age(header) == expected


@pytest.mark.parametrize(
    "hints",
    [
        Hints(http_status=200, headers={"Cache-Control": f"max-age={HUGE}"}),
        Hints(http_status=429, headers={"Retry-After": HUGE}),
        Hints(http_status=503, headers={"Retry-After": HUGE, "Cache-Control": f"max-age={HUGE}"}),
    ],
)
def test_a_feeds_huge_hint_waits_the_cap(hints: Hints) -> None:
    assert requested_delay(hints, NOW) == HINT_CAP
    due = next_due(History(ended_at=NOW), Policy(interval=timedelta(hours=1)), NOW, 0.5, hints)
    assert due == NOW + HINT_CAP


def test_a_webhooks_huge_retry_after_waits_the_cap() -> None:
    decision = decide(
        Answer(429, retry_after=HUGE),
        1,
        retry_seconds=[5.0],
        now=NOW,
        failing_since=None,
        jitter=0.5,
    )
    assert (decision.outcome, decision.next_attempt_at) == (Outcome.RETRY, NOW + HINT_CAP)


async def test_a_huge_max_age_on_a_200_does_not_fail_the_fetch(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """Through the daemon's scheduled path: the job completes, the next one waits a day."""
    cached = feed_server.static(
        "/cached", BODY, headers={"Cache-Control": f"public, max-age={HUGE}"}
    )
    limited = feed_server.static("/limited", "later", status=429, headers={"Retry-After": HUGE})
    config = make_config(tmp_path, [cached, limited])
    before = utcnow()
    async with asyncio.timeout(60), daemon_session(config) as db:
        claims = ClaimRepo(db, "test")
        await reconcile(db, claims, random.Random(1))
        async with Fetcher(config) as fetcher:
            pipeline = Pipeline(db, fetcher, claims)
            for source in await SourceRepo(db).list(enabled_only=True):
                await pipeline.run(source)
        rows = await db.fetchall(
            "SELECT s.url, j.status, j.not_before FROM fetch_job j "
            "JOIN content_sources s ON s.id = j.content_source_id ORDER BY j.id"
        )
    done = {(row[0], row[1]) for row in rows}
    assert (cached, "COMPLETED") in done
    assert (limited, "FAILED") in done
    for row in rows:
        if row[1] == "QUEUED":
            wait = parse_iso(row[2]) - before
            assert HINT_CAP * 0.85 < wait < HINT_CAP * 1.15, (row[0], wait)
    assert {row[0] for row in rows if row[1] == "QUEUED"} == {cached, limited}
