"""``rssd posts``: the newest posts, for a person (aligned text) or a pipeline (JSON lines).

"Newest" is by publication time, else by when rssd stored the post (undated entries).
``--new`` and ``--stored-since`` select by when rssd stored a post instead: a post stored
now but published last week is new to the reader.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from pathlib import Path

from rssd.clock import parse_iso, to_iso, utcnow
from rssd.commands.args import DEFAULT_LIMIT
from rssd.commands.context import load, reader, run
from rssd.commands.errors import CommandError
from rssd.commands.feeds import resolve
from rssd.commands.humanize import ago, shorten, table
from rssd.commands.new_mark import NewMark
from rssd.commands.terminal import safe_json, safe_lines, safe_text
from rssd.exits import EXIT_OK, EXIT_USAGE
from rssd.models.config import normalize_category
from rssd.models.redact import redact
from rssd.repo.queries import PostFilter, PostRow, newest_post_id, newest_posts

SOURCE_WIDTH = 24
TITLE_WIDTH = 90
#: Posts newer than this show a relative time ("3h ago"), older ones their date.
RELATIVE_FOR = timedelta(days=7)


async def query(
    path: Path,
    *,
    feed: str | None,
    since: datetime | None,
    category: str | None = None,
    stored_since: datetime | None = None,
    new: bool = False,
    limit: int | None = DEFAULT_LIMIT,
    mark_file: Path | None = None,
) -> list[PostRow]:
    """The posts asked for; with ``new``, those stored since the last ``--new`` call, and
    the mark moves on to the newest post there is now."""
    config = load(path)
    if category is not None:
        try:
            category = normalize_category(category)
        except ValueError as exc:
            raise CommandError(f"--category {exc}", EXIT_USAGE) from None
    async with reader(config) as db:
        source_id = (await resolve(db, config, feed)).id if feed else None
        mark = NewMark(config.database, mark_file) if new else None
        newest = await newest_post_id(db) if mark else 0
        posts = await newest_posts(
            db,
            PostFilter(
                source_id=source_id,
                since=to_iso(since) if since else None,
                stored_since=to_iso(stored_since) if stored_since else None,
                after_id=mark.read() if mark else None,
                category=category,
                limit=limit or None,
            ),
        )
    if mark:
        mark.write(max([newest, *(post.id for post in posts)]))
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
    limit: int | None,
    as_json: bool,
    category: str | None = None,
    stored_since: datetime | None = None,
    new: bool = False,
) -> int:
    """``limit`` None: the default (20), or every post with ``new``; 0: no limit."""
    if limit is None:
        limit = 0 if new else DEFAULT_LIMIT
    posts = run(
        query(
            path,
            feed=feed,
            since=since,
            stored_since=stored_since,
            new=new,
            limit=limit,
            category=category,
        )
    )
    if as_json:
        if posts:
            print(render_json_lines(posts))
    elif posts:
        print(render_human(posts, utcnow()))
    else:
        print("nothing new since the last --new" if new else "no posts match")
    return EXIT_OK
