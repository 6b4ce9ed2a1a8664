"""``rssd users``: each user's feeds, endpoint state and messages; ``--enable NAME``
re-enables an endpoint disabled after a 410 or days of failures.

Read from the database (what the daemon last synced from config.toml), read-only unless
``--enable`` is given. The secret is never shown; a password in a webhook or feed URL is masked.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from msgspec import Struct

from rssd.clock import parse_iso, utcnow
from rssd.commands.context import load, reader, run, writer
from rssd.commands.errors import CommandError
from rssd.commands.humanize import ago, plural, shorten, table
from rssd.exits import EXIT_OK, EXIT_USAGE
from rssd.models.redact import redact, redact_endpoint
from rssd.repo.outbox import OutboxRepo
from rssd.repo.users import User, UserRepo

ERROR_WIDTH = 60


class UserView(Struct, frozen=True):
    user: User
    feeds: list[str]
    counts: dict[str, int]
    #: Posts not announced: their story reached the user from another feed.
    skipped: int = 0

    @property
    def state(self) -> str:
        """removed, disabled (gone|failing), failing, ok."""
        if not self.user.enabled:
            return "removed"
        if self.user.disabled_reason:
            return f"disabled ({self.user.disabled_reason})"
        return "failing" if self.user.failing_since else "ok"

    def as_json(self) -> dict[str, Any]:
        user = self.user
        return {
            "name": user.name,
            "webhook_url": redact_endpoint(user.webhook_url, user.format),
            "format": user.format,
            "state": self.state,
            "in_config": user.enabled,
            "disabled_reason": user.disabled_reason,
            "disabled_at": user.disabled_at,
            "failing_since": user.failing_since,
            "feeds": [redact(url) for url in self.feeds],
            "keep": list(user.keep),
            "block": list(user.block),
            "pending": self.counts.get("pending", 0),
            "delivered": self.counts.get("delivered", 0),
            "dead": self.counts.get("dead", 0),
            "duplicates_skipped": self.skipped,
            "last_success_at": user.last_success_at,
            "last_error_at": user.last_error_at,
            "last_error": user.last_error,
        }


async def gather(path: Path) -> list[UserView]:
    config = load(path)
    async with reader(config) as db:
        repo = UserRepo(db)
        users = await repo.all()
        feeds = await repo.subscriptions()
        counts = await OutboxRepo(db).counts()
        skipped = await OutboxRepo(db).skipped_counts()
    return [
        UserView(u, feeds.get(u.id, []), counts.get(u.id, {}), skipped.get(u.id, 0)) for u in users
    ]


def _when(value: str | None) -> datetime | None:
    return parse_iso(value) if value else None


def render_human(views: list[UserView], now: datetime) -> str:
    if not views:
        return "no users: add [[users]] tables to config.toml"
    rows = [
        [
            view.user.name,
            view.state,
            str(len(view.feeds)),
            str(view.counts.get("pending", 0)),
            str(view.counts.get("dead", 0)),
            ago(_when(view.user.last_success_at), now),
            shorten(
                f"{ago(_when(view.user.last_error_at), now)}: {view.user.last_error}"
                if view.user.last_error
                else "-",
                ERROR_WIDTH,
            ),
        ]
        for view in views
    ]
    header = ["USER", "STATE", "FEEDS", "PENDING", "DEAD", "LAST SUCCESS", "LAST ERROR"]
    return "\n".join(table(header, rows, right=(2, 3, 4)))


async def enable(path: Path, name: str) -> tuple[User, int]:
    config = load(path)
    async with writer(config) as db:
        user = await UserRepo(db).enable_endpoint(name)
        if user is None:
            raise CommandError(f"no user named {name!r}", EXIT_USAGE)
        pending = (await OutboxRepo(db).counts()).get(user.id, {}).get("pending", 0)
    return user, pending


def main(path: Path, *, as_json: bool, enable_name: str | None) -> int:
    if enable_name is not None:
        user, pending = run(enable(path, enable_name))
        was = f"was disabled ({user.disabled_reason})" if user.disabled_reason else "was enabled"
        due_now = plural(pending, "pending message")
        print(f"{user.name}: endpoint enabled ({was}); {due_now} due now")
        if not user.enabled:
            print(f"note: {user.name} is not in config.toml, so nothing is delivered to it")
        return EXIT_OK
    views = run(gather(path))
    if as_json:
        print(json.dumps({"users": [view.as_json() for view in views]}, indent=2))
    else:
        print(render_human(views, utcnow()))
    return EXIT_OK


def cli(path: Path, args: argparse.Namespace) -> int:
    """``rssd users`` with its parsed arguments; ``users test NAME`` is rssd/commands/
    users_test.py's (imported only then: it needs the sender)."""
    if args.action == "test":
        if not args.name:
            raise CommandError("rssd users test NAME: which user?", EXIT_USAGE)
        from rssd.commands import users_test  # noqa: PLC0415  (only for ``users test``)

        return users_test.main(path, args.name)
    return main(path, as_json=args.json, enable_name=args.enable)
