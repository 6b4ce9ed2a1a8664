"""The ``rssd`` command line: ``run`` and ``check-config`` here, the operator commands in
``rssd.commands`` (one module each). Exit codes: see EPILOG and rssd/commands/errors.py."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from structlog.stdlib import BoundLogger

from rssd import __version__, logs
from rssd.commands import deliveries, discover, export_opml, fetch, import_opml, prune, status
from rssd.commands import posts as post_commands
from rssd.commands import users as user_commands
from rssd.commands.errors import CommandError
from rssd.commands.humanize import plural
from rssd.commands.terminal import safe_lines
from rssd.daemon import loop as event_loop
from rssd.daemon.lock import LockedError
from rssd.daemon.once import run_once
from rssd.daemon.service import run_service
from rssd.daemon.watcher import FileWatcher
from rssd.models.config import Config, ConfigError, load_config, resolve_config_path
from rssd.models.redact import redact
from rssd.repo.db import DatabaseError

EXIT_OK = 0
EXIT_FAILURE = 1

EPILOG = """examples:
  rssd check-config -c /etc/rssd/config.toml
  rssd run --once
  RSSD_CONFIG=/etc/rssd/config.toml rssd run
  rssd status --failing               # a monitoring check: exit 1 if a feed fails
  rssd fetch 3 https://xkcd.com/atom.xml
  rssd posts --since 2h --json | jq .title
  rssd import-opml subscriptions.opml && rssd export-opml > feeds.opml
  rssd discover https://blog.example.org/   # the feeds a page offers
  rssd prune --dry-run
  rssd users && rssd deliveries --failed && rssd redeliver --user alice --since 1d

The config file is -c PATH, else $RSSD_CONFIG, else ./config.toml. Every command works
while the daemon runs. `rssd COMMAND --help` shows each command's options.

Exit codes: 0 ok; 1 bad config, unusable database, another daemon running (run), a
failed fetch (fetch), a failing feed (status --failing), an unusable OPML (import-opml);
2 usage error, unknown FEED or user; 3 fetch refused: the feed is being fetched right now.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rssd",
        description="Fetch the RSS, Atom and JSON Feed feeds listed in config.toml into SQLite.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rssd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "-c",
            "--config",
            metavar="PATH",
            help="config file (default: $RSSD_CONFIG, else ./config.toml)",
        )

    run = commands.add_parser(
        "run",
        help="fetch feeds (with --once: each enabled feed once, then exit)",
        description="Fetch the feeds of config.toml into the database. JSON logs on stdout.",
        epilog="example:\n  rssd run -c config.toml --once",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_option(run)
    run.add_argument("--once", action="store_true", help="fetch every enabled feed once, exit")

    check = commands.add_parser(
        "check-config",
        help="validate config.toml and print a summary",
        description="Validate config.toml; print a summary, or every error. Exit 0 or 1.",
        epilog="example:\n  rssd check-config -c /etc/rssd/config.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_option(check)
    add_operator_commands(commands, config_option)
    return parser


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    description: str,
    example: str,
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"example{'s' if chr(10) in example else ''}:\n  " + example.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_operator_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    """status, fetch, posts, import-opml, export-opml, discover, prune (and the webhook
    commands): see README for their output."""
    status = _command(
        commands,
        "status",
        "every feed's state, last fetch, next due, posts",
        "One row per feed: state (ok, failing, gone, disabled, never fetched), last attempt "
        "and its result,\nlast success, consecutive failures, next due, posts; totals at the "
        "end. Read-only.\nExit 0; with --failing, exit 1 if any feed is failing or gone.",
        "rssd status\nrssd status --json | jq '.sources[] | select(.state != \"ok\")'\n"
        "rssd status --failing -c /etc/rssd/config.toml   # for a monitoring check",
    )
    config_option(status)
    status.add_argument("--json", action="store_true", help="the JSON document (see README)")
    status.add_argument(
        "--failing",
        action="store_true",
        help="only feeds that are failing or gone; exit 1 if there are any",
    )
    status.add_argument(
        "--category",
        metavar="NAME",
        help='only feeds in this category or below it ("Blogs" includes "Blogs / Linux")',
    )

    fetch = _command(
        commands,
        "fetch",
        "fetch feeds now, beside the daemon",
        "Fetch each FEED (an id from `rssd status`, or its URL) now, through the daemon's\n"
        "pipeline, and print each result. A feed the daemon is fetching at this moment is\n"
        "refused, not fetched twice. Exit 0 all fetched, 1 a fetch failed, 2 unknown FEED,\n"
        "3 refused because a feed is being fetched right now.",
        "rssd fetch 3\nrssd fetch https://xkcd.com/atom.xml 5",
    )
    config_option(fetch)
    fetch.add_argument("feeds", nargs="+", metavar="FEED", help="feed id or URL")

    posts = _command(
        commands,
        "posts",
        "the newest posts, as text or JSON lines",
        "The newest posts (by publication time, else the time rssd stored them): time,\n"
        "feed, title and link, or one JSON object per line with --json. Read-only.",
        "rssd posts --since 2h\nrssd posts --source 3 --limit 5\n"
        "rssd posts --since 2026-11-01 --limit 0 --json > posts.jsonl",
    )
    config_option(posts)
    posts.add_argument("--source", metavar="FEED", help="only this feed (id or URL)")
    posts.add_argument("--category", metavar="NAME", help="only feeds in this category or below it")
    posts.add_argument(
        "--since",
        type=post_commands.parse_since,
        metavar="WHEN",
        help="newer than a span (30m, 2h, 7d, 1w) or a date/time (2026-11-01, UTC if no zone)",
    )
    posts.add_argument(
        "--limit",
        type=post_commands.non_negative,
        default=post_commands.DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N posts (default {post_commands.DEFAULT_LIMIT}; 0: no limit)",
    )
    posts.add_argument("--json", action="store_true", help="JSON lines, one post per line")

    import_opml = _command(
        commands,
        "import-opml",
        "add an OPML file's feeds to config.toml",
        "Add the feeds of an OPML file (nested outlines included) to config.toml as\n"
        "[[feeds]] tables at its end; everything already in the file stays byte for byte.\n"
        "URLs already configured are skipped. A running daemon picks the new feeds up by\n"
        "itself. A malformed OPML is an error (exit 1) and config.toml is not touched.",
        "rssd import-opml subscriptions.opml\nrssd import-opml --dry-run feedly.opml",
    )
    config_option(import_opml)
    import_opml.add_argument("file", type=Path, metavar="FILE", help="the OPML file")
    import_opml.add_argument(
        "--dry-run", action="store_true", help="print what would be added, change nothing"
    )

    discover = _command(
        commands,
        "discover",
        "list the feeds a web page offers",
        'Fetch URL and list the feeds it offers through <link rel="alternate">: type,\n'
        "title and absolute URL, in the order rssd prefers them (RSS, Atom, JSON Feed).\n"
        "A feed URL is reported as a feed itself. A [[feeds]] url may be such a page: rssd\n"
        "then fetches the first feed listed here. Exit 0 found, 1 none or fetch failed.",
        "rssd discover https://blog.example.org/",
    )
    config_option(discover)
    discover.add_argument("url", metavar="URL", help="a web page (or feed) URL")

    export_opml = _command(
        commands,
        "export-opml",
        "write config.toml's feeds as OPML 2.0 to stdout",
        "Write the configured feeds as an OPML 2.0 document to stdout.",
        "rssd export-opml > feeds.opml",
    )
    config_option(export_opml)

    prune = _command(
        commands,
        "prune",
        "apply retention now: old fetch jobs, old posts",
        "Delete fetch jobs that ended more than keep_fetch_jobs_days ago (each feed's latest\n"
        "job and latest successful job are always kept) and, if keep_posts_days is set,\n"
        "posts older than that. Safe while the daemon runs.",
        "rssd prune --dry-run\nrssd prune --vacuum",
    )
    config_option(prune)
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    prune.add_argument(
        "--vacuum", action="store_true", help="then VACUUM, giving the space back to the disk"
    )
    add_webhook_commands(commands, config_option)


def add_webhook_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    """users, deliveries, redeliver: the operator's view of the webhooks (README, Webhooks)."""
    users = _command(
        commands,
        "users",
        "each user's feeds, endpoint state and messages",
        "One row per [[users]] entry: endpoint state (ok, failing, disabled (gone|failing),\n"
        "removed), subscribed feeds, pending and dead messages, last success, last error.\n"
        "--enable NAME delivers again to an endpoint disabled after a 410 or 5 days of\n"
        "failures (editing the user's entry in config.toml does the same).",
        "rssd users\nrssd users --json | jq '.users[] | select(.state != \"ok\")'\n"
        "rssd users --enable alice",
    )
    config_option(users)
    users.add_argument("--json", action="store_true", help="one JSON document")
    users.add_argument("--enable", metavar="NAME", help="re-enable NAME's endpoint now")

    listing = _command(
        commands,
        "deliveries",
        "the webhook messages, newest first",
        "The webhook messages (one per user, feed and fetch), newest first: id (the\n"
        "webhook-id), user, feed id, posts, status, attempts, last error. Read-only.",
        "rssd deliveries --user alice --failed\nrssd deliveries --dead --json",
    )
    config_option(listing)
    listing.add_argument("--user", metavar="NAME", help="only this user's messages")
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--failed", action="store_true", help="pending after a failed attempt")
    which.add_argument("--dead", action="store_true", help="given up after the last attempt")
    listing.add_argument(
        "--limit",
        type=post_commands.non_negative,
        default=deliveries.DEFAULT_LIMIT,
        metavar="N",
        help=f"at most N (default {deliveries.DEFAULT_LIMIT}; 0: no limit)",
    )
    listing.add_argument("--json", action="store_true", help="JSON lines, one message per line")

    redeliver = _command(
        commands,
        "redeliver",
        "send webhook messages again",
        "Make messages due again with a fresh set of attempts and the same webhook-id\n"
        "(receivers deduplicate on it): by ID, or every message of --user since --since.\n"
        "Delivered and dead messages alike. The running daemon sends them within seconds.",
        "rssd redeliver msg_0192b3c4d5e6000a1b2c3d4e5f\nrssd redeliver --user alice --since 2d",
    )
    config_option(redeliver)
    redeliver.add_argument("ids", nargs="*", metavar="ID", help="delivery ids")
    redeliver.add_argument("--user", metavar="NAME", help="this user's messages ...")
    redeliver.add_argument(
        "--since",
        type=post_commands.parse_since,
        metavar="WHEN",
        help="... created since a span (2h, 7d) or a date/time (2026-11-01)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = resolve_config_path(args.config)
    if args.command == "check-config":
        return check_config(path)
    if args.command == "run":
        return run(path, once=args.once)
    try:
        return operator_command(args, path)
    except CommandError as exc:
        print(safe_lines(f"rssd {args.command}: {exc}"), file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # `rssd posts | head`: the reader left; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 128 + signal.SIGINT.value


def operator_command(args: argparse.Namespace, path: Path) -> int:
    if args.command == "status":
        return status.main(
            path, as_json=args.json, failing_only=args.failing, category=args.category
        )
    if args.command == "fetch":
        return fetch.main(path, args.feeds)
    if args.command == "posts":
        return post_commands.main(
            path,
            feed=args.source,
            since=args.since,
            limit=args.limit,
            as_json=args.json,
            category=args.category,
        )
    if args.command == "import-opml":
        return import_opml.main(path, args.file, dry_run=args.dry_run)
    if args.command == "export-opml":
        return export_opml.main(path)
    if args.command == "discover":
        return discover.main(path, args.url)
    if args.command == "prune":
        return prune.main(path, dry_run=args.dry_run, vacuum_after=args.vacuum)
    if args.command == "users":
        return user_commands.main(path, as_json=args.json, enable_name=args.enable)
    if args.command == "deliveries":
        return deliveries.main(
            path,
            user=args.user,
            failed=args.failed,
            dead=args.dead,
            limit=args.limit,
            as_json=args.json,
        )
    if args.command == "redeliver":
        return deliveries.redeliver_main(path, ids=args.ids, user=args.user, since=args.since)
    raise AssertionError(args.command)


def _load(path: Path) -> Config | ConfigError:
    """The config, or the error after printing every problem to stderr for the operator."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(safe_lines(f"{path}: {line}"), file=sys.stderr)
        return exc


def check_config(path: Path) -> int:
    config = _load(path)
    if isinstance(config, ConfigError):
        return EXIT_FAILURE
    print(safe_lines(describe_config(path, config)))
    return EXIT_OK


def describe_config(path: Path, config: Config) -> str:
    enabled = [feed for feed in config.feeds if feed.enabled]
    lines = [
        f"config:    {path.resolve()}",
        f"database:  {config.database}",
        f"feeds:     {len(config.feeds)} ({len(enabled)} enabled)",
        f"limits:    max_concurrency={config.max_concurrency} "
        f"max_per_host={config.max_per_host} timeout={config.timeout_seconds:g}s "
        f"max_body={config.max_body_mb:g}MB max_redirects={config.max_redirects}",
        f"schedule:  every {config.interval_minutes} min by default; "
        f"fetch jobs kept {config.keep_fetch_jobs_days} days",
        f"html:      {'sanitized' if config.sanitize_html else 'stored as published'}",
        *_describe_webhooks(config),
        "",
    ]
    urls = [redact(feed.url) for feed in config.feeds]
    width = max(map(len, urls), default=0)
    for url, feed in zip(urls, config.feeds, strict=True):
        extras = [f"[{feed.category}]"] if feed.category else []
        if feed.headers:  # the names only: the values are secrets
            extras.append("headers: " + ", ".join(sorted(feed.headers)))
        if not feed.enabled:
            extras.append("(disabled)")
        lines.append(
            f"  {url:<{width}}  every {config.feed_interval(feed):>4} min  "
            f"{'  '.join([feed.name or '', *extras]).strip()}".rstrip()
        )
    return "\n".join(lines).rstrip()


def _describe_webhooks(config: Config) -> list[str]:
    if not config.users:
        return []
    hooks = config.webhooks
    days = sum(hooks.retry_seconds) / 86400
    private = "allowed" if hooks.allow_private_networks else "refused"
    lines = [
        f"webhooks:  {plural(len(config.users), 'user')}; {hooks.max_attempts} attempts over "
        f"{days:.1f} days, timeout {hooks.timeout_seconds:g}s, private networks {private}"
    ]
    for user in config.users:
        feeds = "every feed" if user.wants_all_feeds() else plural(len(user.feeds), "feed")
        lines.append(f"  {user.name} -> {redact(user.webhook_url)}  ({feeds})")
    return lines


def run(path: Path, *, once: bool) -> int:
    watcher = FileWatcher(path)  # before reading: an edit from now on is a change
    config = _load(path)
    if isinstance(config, ConfigError):
        logs.configure("info")
        logs.get_logger("rssd.daemon").error("config.invalid", path=str(path), errors=config.errors)
        return EXIT_FAILURE
    logs.configure(config.log_level)
    log = logs.get_logger("rssd.daemon")
    # Everything imported and loaded so far lives as long as the process: keep it out of
    # the cyclic GC's full passes, which showed as loop lag at 10,000 feeds (bench: 48 ->
    # 28 ms with 10,000 failing feeds).
    gc.freeze()
    try:
        if once:
            summary = event_loop.run(run_once(config))
            if summary.interrupted_by is not None:
                return 128 + summary.interrupted_by.value
        else:
            event_loop.run(run_service(path, config, watcher))
    except LockedError as exc:
        log.error("daemon.locked", error_message=str(exc))
        print(f"rssd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except DatabaseError as exc:
        log.error("database.unusable", error_message=str(exc), database=str(config.database))
        print(f"rssd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except sqlite3.Error as exc:  # e.g. the disk filled up: committed data is intact
        log.exception("database.error", error_message=str(exc), database=str(config.database))
        print(f"rssd: database error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
    _abandon_stuck_threads(log)
    return EXIT_OK


def _abandon_stuck_threads(log: BoundLogger) -> None:
    """Exit now if a non-daemon thread would hold the process open after a clean stop.

    Everything that matters is closed and on disk by now; a library thread stuck in a
    system call must not turn ``systemctl stop`` into a SIGKILL after TimeoutStopSec.
    """
    stuck = [
        t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
    ]
    if stuck:
        log.warning("daemon.threads_abandoned", threads=stuck)
        logging.shutdown()
        sys.stdout.flush()
        os._exit(EXIT_OK)
