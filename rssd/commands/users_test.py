"""``rssd users test NAME``: send a test message to NAME now, in the user's format, through
the daemon's sender and address guard, and say what happened.

Nothing is written: the message is not a delivery (no outbox row, no attempt counted, the
endpoint's state untouched), so a test never disables or re-enables anything. The
receiver's answer is shown bounded and escaped (a receiver is a third party: its reply
must not drive the terminal); a token or secret is never printed.
"""

from __future__ import annotations

import time
from pathlib import Path

from msgspec import Struct

from rssd.clock import now_iso
from rssd.commands.context import load, run
from rssd.commands.errors import CommandError
from rssd.commands.terminal import safe_text
from rssd.exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from rssd.models.outbox import new_message_id
from rssd.models.redact import redact_endpoint
from rssd.models.users import UserConfig
from rssd.webhooks.formats import probe_body
from rssd.webhooks.rules import Answer, describe
from rssd.webhooks.sender import Exchange, Sender

#: This much of the receiver's answer is shown.
SHOWN_ANSWER_CHARS = 300


class Probe(Struct, frozen=True):
    user: UserConfig
    exchange: Exchange
    seconds: float

    @property
    def delivered(self) -> bool:
        status = self.exchange.answer.status
        return status is not None and 200 <= status < 300


async def probe(path: Path, name: str) -> Probe:
    config = load(path)
    user = next((u for u in config.users if u.name == name), None)
    if user is None:
        raise CommandError(f"no user named {name!r} in the config", EXIT_USAGE)
    async with Sender(config.webhooks, config.user_agent) as sender:
        started = time.monotonic()
        exchange = await sender.exchange(user, new_message_id(), probe_body(name, now_iso()))
        return Probe(user, exchange, time.monotonic() - started)


def reply_text(reply: bytes) -> str:
    """The start of the answer, one line, escaped; cut with an ellipsis."""
    text = reply.decode("utf-8", errors="replace")
    shown = text[:SHOWN_ANSWER_CHARS]
    return safe_text(shown) + ("…" if len(text) > SHOWN_ANSWER_CHARS else "")


def render(result: Probe) -> str:
    answer: Answer = result.exchange.answer
    outcome = "delivered" if result.delivered else "NOT delivered"
    user = result.user
    endpoint = safe_text(redact_endpoint(user.webhook_url, user.format))
    lines = [
        f"{user.name} ({user.format}) -> {endpoint}",
        f"{outcome}: {safe_text(describe(answer))} in {result.seconds:.2f} s",
    ]
    if answer.status is not None:
        lines.append(f"answer: {reply_text(result.exchange.reply) or '(empty)'}")
    return "\n".join(lines)


def main(path: Path, name: str) -> int:
    result = run(probe(path, name))
    print(render(result))
    return EXIT_OK if result.delivered else EXIT_FAILURE
