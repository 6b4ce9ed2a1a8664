"""The pure webhook rules: retry schedule, Retry-After, dead, disable; address checks;
the signature against the reference library."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from rssd.models.users import DEFAULT_RETRY_SECONDS, WebhookSecret
from rssd.net.addresses import parse_address
from rssd.webhooks import signing
from rssd.webhooks.guard import refusal
from rssd.webhooks.rules import Answer, Decision, DisableReason, Outcome, decide
from tests.support.webhooks import SECRETS, hmac_verify

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RETRY = (5.0, 300.0, 1800.0)
MID = 0.5  # jitter at its midpoint: the scheduled time exactly


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("answer", "attempt", "failing_since", "expected"),
    [
        (Answer(200), 1, None, Decision(Outcome.DELIVERED)),
        (Answer(204), 4, NOW - timedelta(days=9), Decision(Outcome.DELIVERED)),
        (Answer(500), 1, None, Decision(Outcome.RETRY, at(5), None, "HTTP 500")),
        (Answer(500), 3, None, Decision(Outcome.RETRY, at(1800), None, "HTTP 500")),
        (Answer(500), 4, None, Decision(Outcome.DEAD, None, None, "HTTP 500")),
        (
            Answer(301),
            1,
            None,
            Decision(Outcome.RETRY, at(5), None, "HTTP 301: redirect not followed"),
        ),
        (
            Answer(None, "timeout after 15 s"),
            2,
            None,
            Decision(Outcome.RETRY, at(300), None, "timeout after 15 s"),
        ),
        (
            Answer(429, retry_after="120"),
            1,
            None,
            Decision(Outcome.RETRY, at(120), None, "HTTP 429", at(120)),
        ),
        # Retry-After pauses the endpoint until then (the last element), whichever message.
        # 0 or a date in the past: at least a second, never a resend at once.
        (
            Answer(503, retry_after="0"),
            1,
            None,
            Decision(Outcome.RETRY, at(1), None, "HTTP 503", at(1)),
        ),
        (
            Answer(429, retry_after="Mon, 30 Nov 2026 11:00:00 GMT"),
            2,
            None,
            Decision(Outcome.RETRY, at(1), None, "HTTP 429", at(1)),
        ),
        (
            Answer(429, retry_after="2"),
            3,
            None,
            Decision(Outcome.RETRY, at(2), None, "HTTP 429", at(2)),
        ),
        (
            Answer(429, retry_after="999999"),
            1,
            None,
            Decision(Outcome.RETRY, at(86400), None, "HTTP 429", at(86400)),
        ),
        (
            Answer(503, retry_after="Mon, 30 Nov 2026 12:10:00 GMT"),
            1,
            None,
            Decision(Outcome.RETRY, at(600), None, "HTTP 503", at(600)),
        ),
        (
            Answer(429, retry_after="soon"),
            1,
            None,
            Decision(Outcome.RETRY, at(5), None, "HTTP 429"),
        ),
        (Answer(500, retry_after="60"), 1, None, Decision(Outcome.RETRY, at(5), None, "HTTP 500")),
        (
            Answer(429, retry_after="60"),
            4,
            None,
            Decision(Outcome.DEAD, None, None, "HTTP 429", at(60)),
        ),
        (
            Answer(410),
            1,
            None,
            Decision(Outcome.RETRY, at(5), DisableReason.GONE, "HTTP 410"),
        ),
        (
            Answer(500),
            2,
            NOW - timedelta(days=5),
            Decision(Outcome.RETRY, at(300), DisableReason.FAILING, "HTTP 500"),
        ),
        (
            Answer(500),
            2,
            NOW - timedelta(days=4, hours=23),
            Decision(Outcome.RETRY, at(300), None, "HTTP 500"),
        ),
    ],
)
def test_decide(
    answer: Answer, attempt: int, failing_since: datetime | None, expected: Decision
) -> None:
    decision = decide(
        answer, attempt, retry_seconds=RETRY, now=NOW, failing_since=failing_since, jitter=MID
    )
    assert decision == expected


@pytest.mark.parametrize(("jitter", "seconds"), [(0.0, 270.0), (0.999999, 330.0)])
def test_jitter_is_ten_percent_either_way(jitter: float, seconds: float) -> None:
    decision = decide(
        Answer(500), 2, retry_seconds=RETRY, now=NOW, failing_since=None, jitter=jitter
    )
    assert decision.next_attempt_at is not None
    assert (decision.next_attempt_at - NOW).total_seconds() == pytest.approx(seconds, abs=0.01)


def test_the_default_schedule_is_ten_attempts_over_about_three_days() -> None:
    assert len(DEFAULT_RETRY_SECONDS) + 1 == 10
    assert timedelta(days=2.5) < timedelta(seconds=sum(DEFAULT_RETRY_SECONDS)) < timedelta(days=3.5)


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("8.8.8.8", False),
        ("2606:4700:4700::1111", False),
        ("::ffff:8.8.8.8", False),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("10.0.0.1", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("255.255.255.255", True),
        ("::1", True),
        ("::", True),
        ("fc00::1", True),
        ("fd12:3456::1", True),
        ("fe80::1", True),
        ("[fe80::1%eth0]", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", True),
        ("::ffff:169.254.169.254", True),
        ("64:ff9b::a9fe:a9fe", True),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", True),  # 6to4 of 127.0.0.1
        ("ff02::1", True),
    ],
)
def test_address_refusal(address: str, refused: bool) -> None:
    parsed = parse_address(address)
    assert parsed is not None
    assert (refusal(parsed) is not None) is refused


def test_host_names_are_not_addresses() -> None:
    assert parse_address("hooks.example.com") is None
    assert parse_address("localhost") is None


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_signature_verifies_with_the_reference_library(name: str) -> None:
    secret = WebhookSecret.parse(SECRETS[name])
    body = '{"type":"posts.new","data":{"title":"caf\u00e9"}}'.encode()
    headers = signing.headers(secret, "msg_0123", int(time.time()), body)
    verifier = Webhook(SECRETS[name])
    assert verifier.verify(body, headers) == {"type": "posts.new", "data": {"title": "café"}}
    assert hmac_verify(SECRETS[name], headers, body)
    assert not hmac_verify(SECRETS[name], {**headers, "webhook-id": "msg_other"}, body)
