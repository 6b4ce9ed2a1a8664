"""The ``rssd`` command line: the parser, and a dispatch that imports only what the chosen
command needs.

Start-up time is import time, and pydantic, aiohttp, structlog and feedparser are slow to
import (bench/cli_speed.py), so ``--version`` and ``--help`` import nothing beyond this
module, and ``dispatch`` imports only the chosen command's module. To add a command: a
``_add_NAME(commands)`` parser function and its entry in ``COMMANDS``, naming a module
under ``rssd/commands/`` with a ``cli(path, args)``. Keep argument types in
``rssd.commands.args`` (light). Exit codes: see EPILOG and rssd/exits.py.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from msgspec import Struct

from rssd import __version__
from rssd.commands import args as argtypes
from rssd.commands.errors import CommandError
from rssd.exits import EXIT_FAILURE, EXIT_OK
from rssd.imports import import_without_collector
from rssd.models.paths import resolve_config_path

EPILOG = """examples:
  rssd check-config -c /etc/rssd/config.toml
  rssd run --once
  RSSD_CONFIG=/etc/rssd/config.toml rssd run
  rssd status --failing               # a monitoring check: exit 1 if a feed fails
  rssd fetch 3 https://xkcd.com/atom.xml "Hacker Gazette"
  rssd fetch --all
  rssd posts --since 2h --json | jq .title
  rssd posts --new                    # what rssd stored since the last --new
  rssd discover https://blog.example.org/   # the feeds a page offers
  rssd users && rssd deliveries --failed && rssd redeliver --user alice --since 1d
  rssd import-opml subscriptions.opml && rssd export-opml > feeds.opml
  rssd prune --dry-run

The config file is -c PATH, else $RSSD_CONFIG, else ./config.toml. Every command works
while the daemon runs. `rssd COMMAND --help` shows each command's options.

Exit codes: 0 ok; 1 bad config, unusable database, another daemon running (run), a
failed fetch (fetch), a failing feed (status --failing), an unusable OPML (import-opml);
2 usage error, unknown FEED or user; 3 fetch refused: the feed is being fetched right now.
"""

if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def config_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        help="config file (default: $RSSD_CONFIG, else ./config.toml)",
    )


def _command(
    commands: Commands, name: str, summary: str, description: str, example: str
) -> argparse.ArgumentParser:
    """A subcommand with the shared -c option and an examples epilog."""
    sub: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"example{'s' if chr(10) in example else ''}:\n  " + example.replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_option(sub)
    return sub


def _add_run(commands: Commands) -> None:
    run = _command(
        commands,
        "run",
        "fetch feeds (with --once: each enabled feed once, then exit)",
        "Fetch the feeds of config.toml into the database. Every line it writes, on stdout\n"
        "and stderr, is one JSON object.",
        "rssd run -c config.toml --once",
    )
    run.add_argument("--once", action="store_true", help="fetch every enabled feed once, exit")


def _add_check_config(commands: Commands) -> None:
    _command(
        commands,
        "check-config",
        "validate config.toml and print a summary",
        "Validate config.toml; print a summary, or every error. Exit 0 or 1.",
        "rssd check-config -c /etc/rssd/config.toml",
    )


def _add_status(commands: Commands) -> None:
    status = _command(
        commands,
        "status",
        "every feed's state, last fetch, next due, posts",
        "One row per feed: state (ok, failing, gone, disabled, never fetched), last attempt "
        "and its result,\nlast success, consecutive failures, next due, posts; totals at the "
        "end. Read-only. A broken\nconfig.toml is reported above the database's view.\n"
        "Exit 0; with --failing, exit 1 if any feed is failing or gone.",
        "rssd status\nrssd status --json | jq '.sources[] | select(.state != \"ok\")'\n"
        "rssd status --failing -c /etc/rssd/config.toml   # for a monitoring check",
    )
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


def _add_fetch(commands: Commands) -> None:
    fetch = _command(
        commands,
        "fetch",
        "fetch feeds now, beside the daemon",
        "Fetch each FEED (an id from `rssd status`, its URL or its name) now, or every\n"
        "enabled feed with --all, through the daemon's pipeline, and print each result. A\n"
        "feed the daemon is fetching at this moment is refused, not fetched twice. Exit 0\n"
        "all fetched, 1 a fetch failed, 2 unknown FEED, 3 refused because a feed is being\n"
        "fetched right now.",
        'rssd fetch 3\nrssd fetch https://xkcd.com/atom.xml "Hacker Gazette"\nrssd fetch --all',
    )
    fetch.add_argument("feeds", nargs="*", metavar="FEED", help="feed id, URL or name")
    fetch.add_argument("--all", action="store_true", help="every enabled feed of config.toml")


def _add_posts(commands: Commands) -> None:
    posts = _command(
        commands,
        "posts",
        "the newest posts, as text or JSON lines",
        "The newest posts (by publication time, else the time rssd stored them): time,\n"
        "feed, title and link, or one JSON object per line with --json. --new shows what\n"
        "rssd stored since your last --new; --stored-since filters by that storing time.",
        'rssd posts --since 2h\nrssd posts --source "Hacker Gazette" --limit 5\n'
        "rssd posts --new --json\n"
        "rssd posts --since 2026-11-01 --limit 0 --json > posts.jsonl\n"
        "rssd posts --search 'asyncio \"task group\" -django' --since 30d",
    )
    posts.add_argument(
        "--search",
        metavar="QUERY",
        help='posts matching QUERY, best first: words, "a phrase", -excluded, a OR b',
    )
    posts.add_argument("--source", metavar="FEED", help="only this feed (id, URL or name)")
    posts.add_argument("--category", metavar="NAME", help="only feeds in this category or below it")
    posts.add_argument(
        "--since",
        type=argtypes.parse_since,
        metavar="WHEN",
        help="published after a span ago (30m, 2h, 7d, 1w) or a date/time (UTC if no zone)",
    )
    posts.add_argument(
        "--stored-since",
        type=argtypes.parse_since,
        metavar="WHEN",
        help="stored by rssd after WHEN (same forms as --since), whenever published",
    )
    posts.add_argument(
        "--new",
        action="store_true",
        help="only posts stored since the last `rssd posts --new` (of this user, this database)",
    )
    posts.add_argument(
        "--limit",
        type=argtypes.non_negative,
        default=None,
        metavar="N",
        help=f"at most N posts (default {argtypes.DEFAULT_LIMIT}, with --new all; 0: no limit)",
    )
    posts.add_argument("--json", action="store_true", help="JSON lines, one post per line")


def _add_import_opml(commands: Commands) -> None:
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
    import_opml.add_argument("file", type=Path, metavar="FILE", help="the OPML file")
    import_opml.add_argument(
        "--dry-run", action="store_true", help="print what would be added, change nothing"
    )


def _add_export_opml(commands: Commands) -> None:
    _command(
        commands,
        "export-opml",
        "write config.toml's feeds as OPML 2.0 to stdout",
        "Write the configured feeds as an OPML 2.0 document to stdout.",
        "rssd export-opml > feeds.opml",
    )


def _add_discover(commands: Commands) -> None:
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
    discover.add_argument("url", metavar="URL", help="a web page (or feed) URL")


def _add_prune(commands: Commands) -> None:
    prune = _command(
        commands,
        "prune",
        "apply retention now: old fetch jobs, old posts",
        "Delete fetch jobs that ended more than keep_fetch_jobs_days ago (each feed's latest\n"
        "job and latest successful job are always kept) and, if keep_posts_days is set,\n"
        "posts older than that. Safe while the daemon runs.",
        "rssd prune --dry-run\nrssd prune --vacuum",
    )
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    prune.add_argument(
        "--vacuum", action="store_true", help="then VACUUM, giving the space back to the disk"
    )


def _add_copy_database(commands: Commands) -> None:
    copy = _command(
        commands,
        "copy-database",
        "copy the SQLite database into an empty PostgreSQL one",
        "Copy every row of the configured SQLite database into an empty PostgreSQL database\n"
        "(schema created first), then compare the row counts. Stop the daemon first; then\n"
        "set database to the URL. The password comes from ~/.pgpass or PGPASSFILE.",
        "rssd copy-database --to postgresql://rssd@db.example/rssd",
    )
    copy.add_argument("--to", required=True, metavar="URL", help="a postgresql:// URL")


def _add_users(commands: Commands) -> None:
    users = _command(
        commands,
        "users",
        "each user's feeds, endpoint state and messages",
        "One row per [[users]] entry: endpoint state (ok, failing, disabled (gone|failing),\n"
        "removed), subscribed feeds, pending and dead messages, last success, last error.\n"
        "--enable NAME delivers again to an endpoint disabled after a 410 or 5 days of\n"
        "failures (editing the user's entry in config.toml does the same).\n"
        "test NAME sends a test message to NAME now, in NAME's format, through the same\n"
        "sender and address guard, and prints the status, the time taken and the start\n"
        "of the answer; exit 0 if delivered, 1 if not. It is not stored as a delivery.",
        "rssd users\nrssd users --json | jq '.users[] | select(.state != \"ok\")'\n"
        "rssd users --enable alice\nrssd users test alice",
    )
    users.add_argument("action", nargs="?", choices=["test"], help="test: send a test message")
    users.add_argument("name", nargs="?", metavar="NAME", help="the user to test")
    users.add_argument("--json", action="store_true", help="one JSON document")
    users.add_argument("--enable", metavar="NAME", help="re-enable NAME's endpoint now")


def _add_deliveries(commands: Commands) -> None:
    listing = _command(
        commands,
        "deliveries",
        "the webhook messages, newest first",
        "The webhook messages (one per user, feed and fetch), newest first: id (the\n"
        "webhook-id), user, feed id, posts, status, attempts, last error. Read-only.",
        "rssd deliveries --user alice --failed\nrssd deliveries --dead --json\n"
        "rssd deliveries --post 4711",
    )
    listing.add_argument("--user", metavar="NAME", help="only this user's messages")
    listing.add_argument(
        "--post",
        type=argtypes.non_negative,
        metavar="ID",
        help="the messages that announced post ID (`rssd posts --json` shows ids): who, when",
    )
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--failed", action="store_true", help="pending after a failed attempt")
    which.add_argument("--dead", action="store_true", help="given up after the last attempt")
    which.add_argument(
        "--skipped",
        action="store_true",
        help="posts not announced: the story reached the user from another feed (dedupe_days)",
    )
    listing.add_argument(
        "--limit",
        type=argtypes.non_negative,
        default=argtypes.DEFAULT_DELIVERIES_LIMIT,
        metavar="N",
        help=f"at most N (default {argtypes.DEFAULT_DELIVERIES_LIMIT}; 0: no limit)",
    )
    listing.add_argument("--json", action="store_true", help="JSON lines, one message per line")


def _add_redeliver(commands: Commands) -> None:
    redeliver = _command(
        commands,
        "redeliver",
        "send webhook messages again",
        "Make messages due again with a fresh set of attempts and the same webhook-id\n"
        "(receivers deduplicate on it): by ID, every message of --user since --since\n"
        "(delivered and dead alike), or with --dead only the dead ones (of --user, since\n"
        "--since, or all). The attempts made so far stay counted. The running daemon\n"
        "sends them within seconds, oldest first.",
        "rssd redeliver msg_0192b3c4d5e6000a1b2c3d4e5f\nrssd redeliver --user alice --since 2d\n"
        "rssd redeliver --dead --since 1d",
    )
    redeliver.add_argument("ids", nargs="*", metavar="ID", help="delivery ids")
    redeliver.add_argument("--user", metavar="NAME", help="this user's messages ...")
    redeliver.add_argument(
        "--dead", action="store_true", help="only dead messages (--user, --since optional)"
    )
    redeliver.add_argument(
        "--since",
        type=argtypes.parse_since,
        metavar="WHEN",
        help="... created since a span (2h, 7d) or a date/time (2026-11-01)",
    )


class Command(Struct, frozen=True):
    """A subcommand: its parser, and the ``module:function`` that runs it, called with the
    config path and the parsed arguments and returning the exit code. The module is
    imported only when its command runs (start-up is import time)."""

    add: Callable[[Commands], None]
    entry: str


#: Every subcommand, in the order ``rssd --help`` lists them: adding one is one entry here
#: (with its parser function above) and its module.
COMMANDS: dict[str, Command] = {
    "run": Command(_add_run, "rssd.daemon.run:cli"),
    "check-config": Command(_add_check_config, "rssd.commands.check_config:cli"),
    "status": Command(_add_status, "rssd.commands.status:cli"),
    "fetch": Command(_add_fetch, "rssd.commands.fetch:cli"),
    "posts": Command(_add_posts, "rssd.commands.posts:cli"),
    "import-opml": Command(_add_import_opml, "rssd.commands.import_opml:cli"),
    "export-opml": Command(_add_export_opml, "rssd.commands.export_opml:cli"),
    "discover": Command(_add_discover, "rssd.commands.discover:cli"),
    "prune": Command(_add_prune, "rssd.commands.prune:cli"),
    "users": Command(_add_users, "rssd.commands.users:cli"),
    "deliveries": Command(_add_deliveries, "rssd.commands.deliveries:cli"),
    "redeliver": Command(_add_redeliver, "rssd.commands.deliveries:redeliver_cli"),
    "copy-database": Command(_add_copy_database, "rssd.commands.copy_database:cli"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rssd",
        description="Fetch the RSS, Atom and JSON Feed feeds listed in config.toml into a "
        "database (SQLite or PostgreSQL).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rssd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "fetch" and bool(args.feeds) == bool(args.all):
        parser.error("fetch: name one or more FEEDs, or --all (not both)")
    path = resolve_config_path(args.config)
    try:
        return dispatch(args, path)
    except CommandError as exc:
        from rssd.commands.terminal import safe_lines  # noqa: PLC0415  (only on error)

        print(safe_lines(f"rssd {args.command}: {exc}"), file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return _reader_left()
    except KeyboardInterrupt:
        return 128 + signal.SIGINT.value
    finally:
        _flush_quietly()


def dispatch(args: argparse.Namespace, path: Path) -> int:
    """Run the chosen command: import its module now, call its entry."""
    module, _, function = COMMANDS[args.command].entry.partition(":")
    entry: Callable[[Path, argparse.Namespace], int] = getattr(
        import_without_collector(module), function
    )
    return entry(path, args)


def _reader_left() -> int:
    """`rssd posts | head`: the reader left; that is not an error. stdout now points at
    /dev/null so the interpreter's final flush cannot fail (and print a traceback) too."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_OK


def _flush_quietly() -> None:
    """Flush stdout now, while a closed pipe can still be handled (see _reader_left)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _reader_left()
    except (OSError, ValueError):
        pass


__all__ = ["EXIT_FAILURE", "EXIT_OK", "build_parser", "config_option", "dispatch", "main"]
