"""The ``rssd`` command line. Exit codes: 0 ok, 1 unusable config/database/lock, 2 usage."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from structlog.stdlib import BoundLogger

from rssd import __version__, logs
from rssd.daemon.lock import LockedError
from rssd.daemon.once import run_once
from rssd.daemon.service import run_service
from rssd.models.config import Config, ConfigError, load_config, resolve_config_path
from rssd.repo.db import DatabaseError

EXIT_OK = 0
EXIT_FAILURE = 1

EPILOG = """examples:
  rssd check-config -c /etc/rssd/config.toml
  rssd run --once
  RSSD_CONFIG=/etc/rssd/config.toml rssd run

The config file is -c PATH, else $RSSD_CONFIG, else ./config.toml.
Exit codes: 0 ok, 1 bad config / unusable database / another daemon running, 2 usage error.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rssd",
        description="Fetch RSS/Atom feeds listed in config.toml into SQLite.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rssd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def config_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("-c", "--config", metavar="PATH", help="config file (see below)")

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = resolve_config_path(args.config)
    if args.command == "check-config":
        return check_config(path)
    if args.command == "run":
        return run(path, once=args.once)
    raise AssertionError(args.command)


def _load(path: Path) -> Config | ConfigError:
    """The config, or the error after printing every problem to stderr for the operator."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(f"{path}: {line}", file=sys.stderr)
        return exc


def check_config(path: Path) -> int:
    config = _load(path)
    if isinstance(config, ConfigError):
        return EXIT_FAILURE
    print(describe_config(path, config))
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
        "",
    ]
    width = max((len(feed.url) for feed in config.feeds), default=0)
    for feed in config.feeds:
        state = "" if feed.enabled else "  (disabled)"
        lines.append(
            f"  {feed.url:<{width}}  every {config.feed_interval(feed):>4} min  "
            f"{feed.name or ''}{state}".rstrip()
        )
    return "\n".join(lines).rstrip()


def run(path: Path, *, once: bool) -> int:
    config = _load(path)
    if isinstance(config, ConfigError):
        logs.configure("info")
        logs.get_logger("rssd.daemon").error("config.invalid", path=str(path), errors=config.errors)
        return EXIT_FAILURE
    logs.configure(config.log_level)
    log = logs.get_logger("rssd.daemon")
    try:
        if once:
            summary = asyncio.run(run_once(config))
            if summary.interrupted_by is not None:
                return 128 + summary.interrupted_by.value
        else:
            asyncio.run(run_service(path, config))
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
