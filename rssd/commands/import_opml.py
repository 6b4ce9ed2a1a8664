"""``rssd import-opml FILE``: add an OPML file's feeds to config.toml.

Only config.toml changes; a running daemon notices the edit and fetches the new feeds by
itself. URLs already in the config (scheme and host compared case-insensitively) are
skipped, so importing the same file twice adds nothing the second time.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from msgspec import Struct

from rssd.commands import opml
from rssd.commands.config_edit import ConfigEditError, NewFeed, replace_file, with_feeds
from rssd.commands.context import load
from rssd.commands.errors import CommandError
from rssd.commands.terminal import safe_lines
from rssd.exits import EXIT_OK
from rssd.models.config import normalize_url
from rssd.models.files import FileTooLarge, NotRegularFile, read_regular_file


class ImportPlan(Struct, frozen=True):
    added: tuple[opml.OpmlFeed, ...]
    present: tuple[opml.OpmlFeed, ...]  # already in config.toml
    rejected: tuple[opml.Rejected, ...]


def read_opml(source: Path, config_path: Path) -> opml.OpmlFeeds:
    try:
        data = read_capped(source, opml.MAX_OPML_BYTES)
    except opml.OpmlError as exc:
        raise CommandError(f"{source}: {exc}; {config_path} not changed") from None
    except OSError as exc:
        raise CommandError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        return opml.parse(data)
    except opml.OpmlError as exc:
        raise CommandError(f"{source}: {exc}; {config_path} not changed") from None


def read_capped(path: Path, limit: int) -> bytes:
    """The file's bytes, refused before reading if it is not a regular file (a FIFO would
    block, /dev/zero never end) or is larger than ``limit`` (rssd.models.files)."""
    try:
        return read_regular_file(path, limit)
    except NotRegularFile:
        raise opml.OpmlError("not a regular file") from None
    except FileTooLarge:
        raise opml.OpmlError(f"larger than {limit // (1024 * 1024)} MB: not a feed list") from None


def plan(found: opml.OpmlFeeds, configured: set[str]) -> ImportPlan:
    added = tuple(f for f in found.feeds if normalize_url(f.url) not in configured)
    present = tuple(f for f in found.feeds if normalize_url(f.url) in configured)
    return ImportPlan(added, present, found.rejected)


def apply(config_path: Path, source: Path, *, dry_run: bool) -> ImportPlan:
    """Validate both files, then add the new feeds in one atomic replace of config.toml."""
    config = load(config_path)  # an invalid config is fixed by hand first, never edited
    found = read_opml(source, config_path)
    result = plan(found, {normalize_url(feed.url) for feed in config.feeds})
    if dry_run or not result.added:
        return result
    original = config_path.read_bytes()
    comment = f"Added by `rssd import-opml {source.name}` on {date.today().isoformat()}"
    try:
        text = with_feeds(
            original.decode("utf-8"),
            [NewFeed(f.url, f.title, f.category_name, f.enabled) for f in result.added],
            comment,
            config_path,
        )
        replace_file(config_path, text, original)
    except (ConfigEditError, OSError) as exc:
        raise CommandError(f"{exc}; {config_path} not changed") from None
    return result


def report(result: ImportPlan, config_path: Path, source: Path, *, dry_run: bool) -> str:
    verb = "would add" if dry_run else "added"
    lines = [f"{config_path}: {verb} {len(result.added)} feeds from {source}"]
    width = max((len(f.url) for f in result.added), default=0)
    for feed in result.added:
        where = f"  [{feed.category_name}]" if feed.category_name else ""
        where += "" if feed.enabled else "  (disabled)"
        lines.append(f"  + {feed.url:<{width}}  {feed.title or ''}{where}".rstrip())
    if result.present:
        lines.append(f"skipped {len(result.present)} already in the config:")
        lines.extend(f"  = {feed.url}" for feed in result.present)
    if result.rejected:
        lines.append(f"skipped {len(result.rejected)} that are not http(s) feeds:")
        lines.extend(
            f"  ! {item.url}: {item.reason.split(', got ')[0]}" for item in result.rejected
        )
    return "\n".join(lines)


def main(config_path: Path, source: Path, *, dry_run: bool) -> int:
    result = apply(config_path, source, dry_run=dry_run)
    print(safe_lines(report(result, config_path, source, dry_run=dry_run)))
    if result.added and not dry_run:
        print("a running daemon adds them by itself within seconds")
    return EXIT_OK


def cli(path: Path, args: argparse.Namespace) -> int:
    """``rssd`` with this command's parsed arguments (rssd/cli.py's registry)."""
    return main(path, args.file, dry_run=args.dry_run)
