"""``rssd posts``: the newest posts, for a person (aligned text) or a pipeline (JSON lines).

"Newest" is by publication time, else by when rssd stored the post (undated entries).
``--new`` and ``--stored-since`` select by when rssd stored a post instead: a post stored
now but published last week is new to the reader. ``--search`` ranks by relevance instead
(rssd/models/search.py has the syntax), with a snippet of the text around the match.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from msgspec.structs import asdict, replace

from rssd.clock import parse_iso, to_iso, utcnow
from rssd.commands.args import DEFAULT_LIMIT
from rssd.commands.context import configured_reader, run
from rssd.commands.errors import CommandError
from rssd.commands.feeds import resolve
from rssd.commands.humanize import ago, shorten, table
from rssd.commands.new_mark import NewMark
from rssd.commands.terminal import safe_json, safe_lines, safe_text
from rssd.exits import EXIT_OK, EXIT_USAGE
from rssd.models.categories import normalize_category
from rssd.models.redact import redact
from rssd.repo.queries import PostFilter, PostRow, newest_post_id, newest_posts

if TYPE_CHECKING:
    from rssd.models.search import Query, Snippet
    from rssd.repo.search import Backfill, Found, SearchHit

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
    category = _category(category)
    async with configured_reader(path) as configured:
        db = configured.db
        source_id = (await resolve(db, configured.config, feed)).id if feed else None
        mark = NewMark(configured.database, mark_file) if new else None
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


async def search(
    path: Path,
    text: str,
    *,
    feed: str | None,
    since: datetime | None,
    category: str | None = None,
    stored_since: datetime | None = None,
    limit: int | None = DEFAULT_LIMIT,
) -> tuple[Query, Found, Backfill]:
    """The posts matching ``text``, best first, and how far the index covers the posts
    stored before it (rssd/daemon/search_backfill.py)."""
    from rssd.models.search import QueryError, parse  # noqa: PLC0415  (only when searching)
    from rssd.repo.search import backfill_progress, search_posts  # noqa: PLC0415

    try:
        parsed = parse(text)
    except QueryError as exc:
        raise CommandError(f"--search: {exc}", EXIT_USAGE) from None
    category = _category(category)
    async with configured_reader(path) as configured:
        db = configured.db
        source_id = (await resolve(db, configured.config, feed)).id if feed else None
        wanted = PostFilter(
            source_id=source_id,
            since=to_iso(since) if since else None,
            stored_since=to_iso(stored_since) if stored_since else None,
            category=category,
            limit=limit or None,
        )
        found = await search_posts(db, parsed, wanted)
        progress = await backfill_progress(db)
    shown = [
        replace(hit, post=replace(hit.post, source_url=redact(hit.post.source_url)))
        for hit in found.hits
    ]
    return parsed, replace(found, hits=shown), progress


def _category(category: str | None) -> str | None:
    if category is None:
        return None
    try:
        return normalize_category(category)
    except ValueError as exc:
        raise CommandError(f"--category {exc}", EXIT_USAGE) from None


def when(post: PostRow) -> datetime:
    return parse_iso(post.published_at or post.created_at)


def _bare(url: str) -> str:
    """An unnamed feed's URL without its scheme: the host shows within the column."""
    return url.split("://", 1)[-1]


def render_human(
    posts: Sequence[PostRow],
    now: datetime,
    snippets: Sequence[Snippet] | None = None,
    mark: tuple[str, str] = ("*", "*"),
) -> str:
    """Time, source, title on one line; the link under the title, and under it the
    snippet of a search (its matched words between ``mark``'s two strings)."""
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
    out = [safe_lines(lines[0])]
    for index, (post, line) in enumerate(zip(posts, lines[1:], strict=True)):
        out.append(safe_lines(line))
        if post.url:
            out.append(" " * indent + safe_text(post.url))
        if snippets and snippets[index].parts != ("",):
            parts = snippets[index].parts
            # Every piece made safe on its own, so the marks (maybe escape sequences of
            # ours) are the only control characters of the line.
            pieces = [
                safe_text(part) if i % 2 == 0 else mark[0] + safe_text(part) + mark[1]
                for i, part in enumerate(parts)
            ]
            out.append(" " * indent + "".join(pieces))
    return "\n".join(out)


def render_json_lines(posts: Sequence[PostRow]) -> str:
    return "\n".join(safe_json(json.dumps(asdict(post), ensure_ascii=False)) for post in posts)


#: How a search's matched words stand out: bold on a terminal, asterisks in a pipe.
BOLD = ("\x1b[1m", "\x1b[0m")
PLAIN = ("*", "*")


def snippets_of(parsed: Query, hits: Sequence[SearchHit]) -> list[Snippet]:
    from rssd.models.search import body_text, snippet  # noqa: PLC0415  (only when searching)

    return [snippet(body_text(h.post.summary, h.post.content), parsed.words) for h in hits]


def search_main(
    path: Path,
    text: str,
    *,
    feed: str | None,
    since: datetime | None,
    limit: int | None,
    as_json: bool,
    category: str | None = None,
    stored_since: datetime | None = None,
) -> int:
    parsed, found, progress = run(
        search(
            path,
            text,
            feed=feed,
            since=since,
            category=category,
            stored_since=stored_since,
            limit=DEFAULT_LIMIT if limit is None else limit,
        )
    )
    if not progress.complete:
        share = progress.done * 100 // max(progress.total, 1)
        print(
            f"note: the search index is still being built by `rssd run`: {share}% of the "
            f"{progress.total:,} posts stored before it are searched so far",
            file=sys.stderr,
        )
    if found.ranked_newest is not None:
        print(
            f"note: more than {found.ranked_newest:,} posts match; these are the best of the "
            f"{found.ranked_newest:,} stored last (more words, --source or --since narrow it)",
            file=sys.stderr,
        )
    hits = found.hits
    snippets = snippets_of(parsed, hits)
    if as_json:
        lines = [
            json.dumps(
                {**asdict(hit.post), "rank": hit.rank, "snippet": snip.text}, ensure_ascii=False
            )
            for hit, snip in zip(hits, snippets, strict=True)
        ]
        if lines:
            print("\n".join(safe_json(line) for line in lines))
    elif hits:
        mark = BOLD if sys.stdout.isatty() else PLAIN
        print(render_human([hit.post for hit in hits], utcnow(), snippets, mark))
    else:
        print("no posts match")
    return EXIT_OK


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


def cli(path: Path, args: argparse.Namespace) -> int:
    """``rssd`` with this command's parsed arguments (rssd/cli.py's registry)."""
    if args.search is not None:
        if args.new:
            raise CommandError("--search and --new do not go together", EXIT_USAGE)
        return search_main(
            path,
            args.search,
            feed=args.source,
            since=args.since,
            stored_since=args.stored_since,
            limit=args.limit,
            as_json=args.json,
            category=args.category,
        )
    return main(
        path,
        feed=args.source,
        since=args.since,
        stored_since=args.stored_since,
        new=args.new,
        limit=args.limit,
        as_json=args.json,
        category=args.category,
    )
