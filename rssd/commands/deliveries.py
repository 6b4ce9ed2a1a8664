"""``rssd deliveries``: the webhook messages, newest first (``--post ID``: those that
announced one post, and when); ``rssd redeliver``: send some again (same webhook-id, a
fresh set of attempts), by id or by user and time."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from msgspec.structs import asdict

from rssd.clock import parse_iso, to_iso, utcnow
from rssd.commands.args import DEFAULT_DELIVERIES_LIMIT
from rssd.commands.context import load, reader, run, writer
from rssd.commands.errors import CommandError
from rssd.commands.humanize import ago, due, plural, shorten, table
from rssd.commands.terminal import safe_json, safe_lines
from rssd.exits import EXIT_OK, EXIT_USAGE
from rssd.models.redact import redact
from rssd.repo.db import Database
from rssd.repo.outbox import Delivery, OutboxRepo, SkippedPost
from rssd.repo.queries import PostFilter, PostRow, newest_posts
from rssd.repo.users import User, UserRepo

DEFAULT_LIMIT = DEFAULT_DELIVERIES_LIMIT
ERROR_WIDTH = 50


async def _user(db: Database, name: str) -> User:
    user = await UserRepo(db).get(name)
    if user is None:
        raise CommandError(f"no user named {name!r}", EXIT_USAGE)
    return user


async def query(
    path: Path, *, user: str | None, failed: bool, dead: bool, limit: int
) -> list[Delivery]:
    config = load(path)
    async with reader(config) as db:
        user_id = (await _user(db, user)).id if user else None
        statuses = (
            ("dead",) if dead else ("pending",) if failed else ("pending", "delivered", "dead")
        )
        return await OutboxRepo(db).recent(user_id, statuses, failed_only=failed, limit=limit)


async def query_post(path: Path, post_id: int) -> tuple[PostRow, list[Delivery]]:
    """The post ``post_id`` and the messages that announced it, oldest first."""
    config = load(path)
    async with reader(config) as db:
        found = await newest_posts(db, PostFilter(post_id=post_id, limit=1))
        if not found:
            raise CommandError(f"no post with id {post_id} (pruned, or never stored)", EXIT_USAGE)
        return found[0], await OutboxRepo(db).announcing(post_id)


def render_post(post: PostRow, rows: list[Delivery], now: datetime) -> str:
    """Which post, then one line per message: who was told, when, and how it went."""
    feed = post.source_name or redact(post.source_url)
    head = (
        f"post {post.id}: {shorten(post.title or '(untitled)', 80)} ({shorten(feed, 40)}), "
        f"stored {ago(parse_iso(post.created_at), now)}"
    )
    if not rows:
        return safe_lines(f"{head}\nno webhook message announced it")
    table_rows = []
    for row in rows:
        told = row.last_attempt_at if row.status == "delivered" else None
        table_rows.append(
            [
                row.user_name,
                row.status,
                ago(parse_iso(told), now) if told else "-",
                str(row.attempts),
                row.id,
                shorten(row.last_error or "-", ERROR_WIDTH),
            ]
        )
    header = ["USER", "STATUS", "DELIVERED", "ATTEMPTS", "MESSAGE", "LAST ERROR"]
    return safe_lines("\n".join([head, *table(header, table_rows, right=(3,))]))


def post_main(path: Path, post_id: int, *, as_json: bool) -> int:
    post, rows = run(query_post(path, post_id))
    if as_json:
        if rows:
            print("\n".join(safe_json(json.dumps(asdict(row))) for row in rows))
    else:
        print(render_post(post, rows, utcnow()))
    return EXIT_OK


def render_human(rows: list[Delivery], now: datetime) -> str:
    if not rows:
        return "no deliveries match"
    table_rows = []
    for row in rows:
        if row.status == "pending" and row.held:
            state = f"pending, held: {row.held}"
        elif row.status == "pending":
            state = f"pending, next {due(parse_iso(row.next_attempt_at), now)}"
        else:
            state = row.status
        attempts = str(row.attempts)
        if row.earlier_attempts:
            attempts += f" (+{row.earlier_attempts} before redeliver)"
        table_rows.append(
            [
                row.id,
                row.user_name,
                str(row.content_source_id),
                str(row.posts_count),
                state,
                attempts,
                ago(parse_iso(row.created_at), now),
                shorten(row.last_error or "-", ERROR_WIDTH),
            ]
        )
    header = ["ID", "USER", "FEED", "POSTS", "STATUS", "ATTEMPTS", "CREATED", "LAST ERROR"]
    return "\n".join(table(header, table_rows, right=(2, 3, 5)))


async def query_skipped(path: Path, *, user: str | None, limit: int) -> list[SkippedPost]:
    config = load(path)
    async with reader(config) as db:
        user_id = (await _user(db, user)).id if user else None
        return await OutboxRepo(db).skipped(user_id, limit)


def render_skipped(rows: list[SkippedPost], now: datetime) -> str:
    if not rows:
        return "no posts skipped as duplicates"
    table_rows = [
        [
            row.user_name,
            str(row.post_id),
            str(row.content_source_id),
            str(row.duplicate_of),
            shorten(row.story, ERROR_WIDTH),
            ago(parse_iso(row.skipped_at), now),
        ]
        for row in rows
    ]
    header = ["USER", "POST", "FEED", "DUPLICATE OF", "STORY", "SKIPPED"]
    return "\n".join(table(header, table_rows, right=(1, 2, 3)))


def main(
    path: Path,
    *,
    user: str | None,
    failed: bool,
    dead: bool,
    limit: int,
    as_json: bool,
    skipped: bool = False,
) -> int:
    if skipped:
        skips = run(query_skipped(path, user=user, limit=limit))
        if as_json:
            if skips:
                print(
                    "\n".join(safe_json(json.dumps(asdict(s), ensure_ascii=False)) for s in skips)
                )
        else:
            print(render_skipped(skips, utcnow()))
        return EXIT_OK
    rows = run(query(path, user=user, failed=failed, dead=dead, limit=limit))
    if as_json:
        if rows:
            print("\n".join(json.dumps(asdict(row)) for row in rows))
    else:
        print(render_human(rows, utcnow()))
    return EXIT_OK


async def redeliver(
    path: Path, ids: list[str], user: str | None, since: datetime | None, dead: bool = False
) -> tuple[int, User | None]:
    config = load(path)
    async with writer(config) as db:
        repo = OutboxRepo(db)
        if ids:
            done = await repo.redeliver(ids)
            unknown = [i for i in ids if i not in done]
            if unknown:
                others = " (the others are due again)" if done else ""
                raise CommandError(f"no such deliveries: {' '.join(unknown)}{others}", EXIT_USAGE)
            return len(done), None
        target = await _user(db, user) if user is not None else None
        count = await repo.redeliver_where(
            user_id=target.id if target else None,
            since=to_iso(since) if since is not None else None,
            dead_only=dead,
        )
        return count, target


def redeliver_main(
    path: Path, *, ids: list[str], user: str | None, since: datetime | None, dead: bool = False
) -> int:
    if ids and (user or since or dead):
        raise CommandError("give delivery IDs, or --user/--since/--dead, not both", EXIT_USAGE)
    if not ids and not dead and not (user and since):
        raise CommandError("give delivery IDs, --user and --since together, or --dead", EXIT_USAGE)
    count, target = run(redeliver(path, ids, user, since, dead))
    print(f"{plural(count, 'message')} due again (a running daemon sends them within seconds)")
    if target is not None and target.disabled_reason:
        print(
            f"note: {target.name}'s endpoint is disabled ({target.disabled_reason}); "
            f"`rssd users --enable {target.name}` to deliver"
        )
    return EXIT_OK


def cli(path: Path, args: argparse.Namespace) -> int:
    """``rssd deliveries`` with its parsed arguments."""
    if args.post is not None:
        return post_main(path, args.post, as_json=args.json)
    return main(
        path,
        user=args.user,
        failed=args.failed,
        dead=args.dead,
        limit=args.limit,
        as_json=args.json,
        skipped=args.skipped,
    )


def redeliver_cli(path: Path, args: argparse.Namespace) -> int:
    """``rssd redeliver`` with its parsed arguments."""
    return redeliver_main(path, ids=args.ids, user=args.user, since=args.since, dead=args.dead)
