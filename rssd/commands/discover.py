"""``rssd discover URL``: which feeds a page offers, so an operator can choose one.

One GET with the daemon's limits and User-Agent (and the feed's request headers if the
URL is configured); the body is parsed as the daemon would. A feed answers "a feed
itself"; an HTML page lists its ``<link rel="alternate">`` feeds in the order rssd
prefers them (the first is the one a ``[[feeds]]`` entry with that URL would fetch).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import aiohttp

from rssd.commands.context import load, run
from rssd.commands.errors import CommandError
from rssd.commands.humanize import table
from rssd.commands.terminal import safe_lines, safe_text
from rssd.exits import EXIT_OK, EXIT_USAGE
from rssd.fetch.discover import resolve_links
from rssd.fetch.http import FetchError, RequestLimits, get
from rssd.fetch.worker import ParseOutcome, parse_document
from rssd.models.config import Config, check_http_url
from rssd.models.redact import redact, strip_userinfo

_KINDS = (("rss", "RSS"), ("atom", "Atom"), ("json", "JSON Feed"))


def kind_of(version: str | None) -> str:
    """feedparser's version ("rss20", "atom10") or ours ("json11") -> RSS, Atom, JSON Feed."""
    for prefix, kind in _KINDS:
        if (version or "").startswith(prefix):
            return kind
    return "feed"


def _config(path: Path) -> Config:
    """The config if there is one (limits, User-Agent, headers); discovering needs none."""
    return load(path) if path.exists() else Config()


async def discover(path: Path, url: str) -> str:
    try:
        url = check_http_url(url)
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    config = _config(path)
    limits = RequestLimits(
        timeout=config.timeout_seconds,
        max_bytes=config.max_body_bytes,
        max_redirects=config.max_redirects,
    )
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        try:
            response = await get(
                session,
                url,
                limits,
                user_agent=config.user_agent,
                headers=config.feed_headers(url),
            )
        except FetchError as exc:
            raise CommandError(f"{redact(url)}: {exc.code.value}: {redact(exc.message)}") from None
    if response.not_modified:
        raise CommandError(f"{redact(url)}: HTTP 304 to an unconditional request")
    # On this thread, the main one: the parse is bounded by the worker's own alarm.
    outcome: ParseOutcome = parse_document(
        response.body,
        strip_userinfo(url),
        response.content_type,
        config.sanitize_html,
        config.parse_timeout_seconds,
    )
    shown = redact(url)
    if outcome.error_code is None:
        title = f' "{safe_text(outcome.title)}"' if outcome.title else ""
        kind = kind_of(outcome.version)
        return f"{shown} is a feed itself: {kind}{title}, {len(outcome.posts)} posts"
    links = resolve_links(outcome.page, response.final_url) if outcome.page else ()
    if not links:
        raise CommandError(f"{shown}: {outcome.error_code.value}: {redact(outcome.message or '')}")
    rows = [[link.kind, link.title or "-", redact(link.href)] for link in links]
    plural = "s" if len(links) > 1 else ""
    lines = [
        f"{shown} is an HTML page offering {len(links)} feed{plural} (rssd would use the first):",
        *("  " + line for line in table(["TYPE", "TITLE", "URL"], rows)),
    ]
    return "\n".join(lines)


def main(path: Path, url: str) -> int:
    # What a publisher wrote (titles, links) must not drive the operator's terminal.
    print(safe_lines(run(discover(path, url))))
    return EXIT_OK


def cli(path: Path, args: argparse.Namespace) -> int:
    """``rssd`` with this command's parsed arguments (rssd/cli.py's registry)."""
    return main(path, args.url)
