"""``rssd posts``: the newest posts, for a person (aligned text) or a pipeline (JSON lines).

"Newest" is by publication time, else by when rssd stored the post (undated entries).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rssd.clock import parse_iso, to_iso, utcnow
from rssd.commands.context import load, reader
from rssd.commands.errors import EXIT_OK, EXIT_USAGE, CommandError
from rssd.commands.feeds import resolve
from rssd.commands.humanize import ago, shorten, table
from rssd.commands.terminal import safe_json, safe_lines, safe_text
from rssd.models.config import normalize_category
from rssd.models.redact import redact
from rssd.repo.queries import PostRow, newest_posts

DEFAULT_LIMIT = 20
SOURCE_WIDTH = 24
TITLE_WIDTH = 90
#: Posts newer than this show a relative time ("3h ago"), older ones their date.
RELATIVE_FOR = timedelta(days=7)

_SPAN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """'2h', '30m', '7d', '1w' (before now), or a date or time: '2026-11-01',
    '2026-11-01T08:00', '2026-11-01T08:00:00+01:00'. No zone means UTC.

    Raises argparse.ArgumentTypeError, so a bad value is a usage error (exit 2).
    """
    match = _SPAN.match(text)
    if match:
        amount, unit = int(match.group(1)), _UNIT[match.group(2).lower()]
        return (now or utcnow()) - timedelta(**{unit: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a span like 2h, 30m, 7d, 1w or a date like 2026-11-01"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number, 0 for no limit")
    return int(text)


async def query(
    path: Path,
    *,
    feed: str | None,
    since: datetime | None,
    limit: int,
    category: str | None = None,
) -> list[PostRow]:
    config = load(path)
    if category is not None:
        try:
            category = normalize_category(category)
        except ValueError as exc:
            raise CommandError(f"--category {exc}", EXIT_USAGE) from None
    async with reader(config) as db:
        source_id = (await resolve(db, config, feed)).id if feed else None
        posts = await newest_posts(
            db,
            source_id=source_id,
            since=to_iso(since) if since else None,
            limit=limit or None,
            category=category,
        )
    return [replace(post, source_url=redact(post.source_url)) for post in posts]


def when(post: PostRow) -> datetime:
    return parse_iso(post.published_at or post.created_at)


def _bare(url: str) -> str:
    """An unnamed feed's URL without its scheme: the host shows within the column."""
    return url.split("://", 1)[-1]


def render_human(posts: Sequence[PostRow], now: datetime) -> str:
    """Time, source, title on one line; the link under the title."""
    rows = []
    for post in posts:
        moment = when(post)
        shown = ago(moment, now) if now - moment < RELATIVE_FOR else moment.strftime("%Y-%m-%d")
        rows.append(
            [
                shown,
                shorten(post.source_name or _bare(post.source_url), SOURCE_WIDTH),
                shorten(post.title or "(untitled)", TITLE_WIDTH),
            ]
        )
    lines = table(["TIME", "SOURCE", "TITLE"], rows)
    indent = len(lines[0]) - len("TITLE")
    out = [lines[0]]
    for post, line in zip(posts, lines[1:], strict=True):
        out.append(line)
        if post.url:
            out.append(" " * indent + safe_text(post.url))
    return safe_lines("\n".join(out))


def render_json_lines(posts: Sequence[PostRow]) -> str:
    return "\n".join(safe_json(json.dumps(asdict(post), ensure_ascii=False)) for post in posts)


def main(
    path: Path,
    *,
    feed: str | None,
    since: datetime | None,
    limit: int,
    as_json: bool,
    category: str | None = None,
) -> int:
    posts = asyncio.run(query(path, feed=feed, since=since, limit=limit, category=category))
    if as_json:
        if posts:
            print(render_json_lines(posts))
    elif posts:
        print(render_human(posts, utcnow()))
    else:
        print("no posts match")
    return EXIT_OK
