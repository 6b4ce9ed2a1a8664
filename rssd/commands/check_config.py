"""``rssd check-config``: validate config.toml; print a summary, or every problem at once."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

from rssd.commands.context import known_sources, run
from rssd.commands.humanize import plural, span
from rssd.commands.terminal import safe_lines
from rssd.exits import EXIT_FAILURE, EXIT_OK
from rssd.models.config import (
    Config,
    ConfigError,
    exposed_files,
    inline_secrets,
    load_config,
    normalize_url,
)
from rssd.models.files import readable_by_others
from rssd.models.redact import redact
from rssd.models.same_feed import SameFeed, same_feeds


def main(path: Path) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(safe_lines(f"{path}: {line}"), file=sys.stderr)
        return EXIT_FAILURE
    for exposed in exposed_files(config, path):
        print(safe_lines(f"{path}: warning: {exposed}"), file=sys.stderr)
    secrets = inline_secrets(config)
    mode = readable_by_others(path)
    if secrets and mode is not None:
        print(
            safe_lines(
                f"{path}: warning: readable by every user of this machine (mode {mode:04o}) "
                f"and holds secrets ({', '.join(secrets)}): chmod o-r, or move them to "
                f"secret files (README, Running under systemd: Secrets)"
            ),
            file=sys.stderr,
        )
    for twice in configured_twice(config):
        print(safe_lines(f"{path}: warning: {twice.describe()}"), file=sys.stderr)
    print(safe_lines(describe_config(path, config)))
    return EXIT_OK


def configured_twice(config: Config) -> list[SameFeed]:
    """Pages of this config whose feed (as the database found it) is configured too."""
    configured = {normalize_url(feed.url) for feed in config.feeds if feed.enabled}
    sources = [s for s in run(known_sources(config)) if normalize_url(s.url) in configured]
    return same_feeds(sources)


def describe_config(path: Path, config: Config) -> str:
    enabled = [feed for feed in config.feeds if feed.enabled]
    lines = [
        f"config:    {path.resolve()}",
        f"database:  {config.database_label}",
        f"feeds:     {len(config.feeds)} ({len(enabled)} enabled)",
        f"limits:    max_concurrency={config.max_concurrency} "
        f"max_per_host={config.max_per_host} timeout={config.timeout_seconds:g}s "
        f"max_body={config.max_body_mb:g}MB max_redirects={config.max_redirects} "
        f"host_gap={config.host_min_gap_seconds:g}s",
        f"schedule:  by posting rate, {config.min_interval_minutes:g}-"
        f"{config.max_interval_minutes:g} min, starting at {config.interval_minutes} min; "
        f"fetch jobs kept {config.keep_fetch_jobs_days} days",
        f"html:      {'sanitized' if config.sanitize_html else 'stored as published'}",
        f"metrics:   {config.metrics_file or 'off'}",
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
        low, high = config.feed_bounds(feed)
        every = (
            f"every {feed.interval_minutes:>4} min"
            if feed.interval_minutes
            else f"adaptive {low:g}-{high:g} min"
        )
        lines.append(
            f"  {url:<{width}}  {every}  {'  '.join([feed.name or '', *extras]).strip()}".rstrip()
        )
    return "\n".join(lines).rstrip()


def _describe_webhooks(config: Config) -> list[str]:
    if not config.users:
        return []
    hooks = config.webhooks
    over = span(timedelta(seconds=sum(hooks.retry_seconds)))
    private = "allowed" if hooks.allow_private_networks else "refused"
    lines = [
        f"webhooks:  {plural(len(config.users), 'user')}; {hooks.max_attempts} attempts over "
        f"{over}, timeout {hooks.timeout_seconds:g}s, private networks {private}"
    ]
    for user in config.users:
        feeds = "every feed" if user.wants_all_feeds() else plural(len(user.feeds), "feed")
        filters = [f"keep {rule.text}" for rule in user.keep]
        filters += [f"block {rule.text}" for rule in user.block]
        shown = "; ".join([feeds, *filters])
        lines.append(f"  {user.name} -> {redact(user.webhook_url)}  ({shown})")
    return lines


def cli(path: Path, args: argparse.Namespace) -> int:
    """``rssd`` with this command's parsed arguments (rssd/cli.py's registry)."""
    return main(path)
