"""What one delivery attempt's answer means: delivered, retry when, dead, disable the
endpoint. Pure functions, tested table-driven; the loop in rssd/daemon/delivery.py acts.

Svix's and the Standard Webhooks' rules: 2xx is delivered; anything else (3xx included:
redirects are never followed) is a failure retried on ``retry_seconds`` with +-10%
jitter, or at the receiver's Retry-After on 429/503 (at least 1 s, at most a day), which
pauses the whole endpoint until then, not only the message; after
the last attempt the message is dead. 410 Gone disables the endpoint at once; an endpoint that has
failed for 5 days without one success is disabled.

Chat and push services answer in their own words; ``read_answer`` maps them onto these
rules: Discord's 429 says when in its JSON body (``retry_after``, seconds), Slack's 404
``no_service`` and Discord's 404 "Unknown Webhook" (code 10015) mean the webhook was
deleted: gone, like a 410.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from msgspec import Struct

from rssd.models.delays import retry_after

#: The shortest wait a Retry-After can ask: ``0`` or a date in the past would otherwise
#: resend at once, attempt after attempt, with nothing in between.
RETRY_AFTER_FLOOR = timedelta(seconds=1)
FAILING_DISABLES_AFTER = timedelta(days=5)
JITTER = 0.10


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


class DisableReason(StrEnum):
    GONE = "gone"
    FAILING = "failing"


class Answer(Struct, frozen=True):
    """What an attempt got: an HTTP status, or none and an error (refused, timeout...)."""

    status: int | None
    error: str | None = None
    retry_after: str | None = None
    #: The service said the endpoint no longer exists (a 410, or its own words for it).
    gone: bool = False
    #: The service's short reason (Slack's ``no_service``), for logs and the operator.
    detail: str | None = None


class Decision(Struct, frozen=True):
    outcome: Outcome
    next_attempt_at: datetime | None = None  # for RETRY
    disable: DisableReason | None = None
    error: str | None = None  # what to record and log; None when delivered
    #: The endpoint asked for a pause (a 429's or 503's Retry-After): nothing is sent to
    #: it before then, whichever message, whichever daemon.
    pause_until: datetime | None = None


def decide(
    answer: Answer,
    attempt: int,
    *,
    retry_seconds: Sequence[float],
    now: datetime,
    failing_since: datetime | None,
    jitter: float,
) -> Decision:
    """The fate of a message after its ``attempt``-th attempt (1-based).

    ``failing_since``: the endpoint's first failure since its last success (None: it was
    not failing). ``jitter`` in [0, 1): 0.5 is the scheduled time exactly.
    """
    status = answer.status
    if status is not None and 200 <= status < 300:
        return Decision(Outcome.DELIVERED)
    error = describe(answer)
    disable = None
    if status == 410 or answer.gone:
        disable = DisableReason.GONE
    elif now - (failing_since or now) >= FAILING_DISABLES_AFTER:
        disable = DisableReason.FAILING
    pause = None
    if status in (429, 503):
        asked = retry_after(answer.retry_after, now)
        if asked is not None:  # retry_after caps it at HINT_CAP (a day)
            pause = now + max(asked, RETRY_AFTER_FLOOR)
    if attempt > len(retry_seconds):
        return Decision(Outcome.DEAD, disable=disable, error=error, pause_until=pause)
    delay = timedelta(seconds=retry_seconds[attempt - 1] * (1 + JITTER * (2 * jitter - 1)))
    due = pause if pause is not None else now + delay
    return Decision(Outcome.RETRY, due, disable, error, pause)


def describe(answer: Answer) -> str:
    """A short reason for logs and ``rssd deliveries``."""
    if answer.status is None:
        return answer.error or "no answer"
    if 300 <= answer.status < 400:
        return f"HTTP {answer.status}: redirect not followed"
    return f"HTTP {answer.status}: {answer.detail}" if answer.detail else f"HTTP {answer.status}"


#: Slack's answers that mean the webhook is gone for good.
SLACK_GONE = frozenset({"no_service", "channel_is_archived", "no_active_hooks"})
DISCORD_UNKNOWN_WEBHOOK = 10015
DETAIL_CHARS = 100


def read_answer(fmt: str, status: int, retry_after: str | None, body: bytes) -> Answer:
    """An HTTP answer as the rules read it, given what the user's service says in its body."""
    if 200 <= status < 300:
        return Answer(status)
    text = body[:4096].decode("utf-8", errors="replace").strip()
    detail, gone = None, status == 410
    if fmt == "slack" and text and len(text) <= DETAIL_CHARS and text.isprintable():
        detail = text
        gone = gone or (status in (404, 410) and text in SLACK_GONE)
    elif fmt in ("discord", "ntfy", "gotify"):
        payload = _json(text)
        if fmt == "discord":
            if status == 429 and retry_after is None:
                seconds = payload.get("retry_after")
                if isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0:
                    retry_after = str(math.ceil(seconds))
            gone = gone or (status == 404 and payload.get("code") == DISCORD_UNKNOWN_WEBHOOK)
            message = payload.get("message")
        else:
            message = payload.get("error") or payload.get("errorDescription")
        if isinstance(message, str) and message.strip():
            printable = "".join(ch for ch in message if ch.isprintable() or ch.isspace())
            detail = " ".join(printable.split())[:DETAIL_CHARS] or None
    return Answer(status, None, retry_after, gone, detail)


def _json(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
