"""``rssd export-opml``: config.toml's feeds as OPML 2.0 on stdout, for another reader
or for ``rssd import-opml`` elsewhere. The feeds come from the config; the database, if
there is one, only lends the feeds' own titles to those without a ``name``."""

from __future__ import annotations

import argparse
from pathlib import Path

from rssd.clock import utcnow
from rssd.commands import opml
from rssd.commands.context import known_sources, load, run
from rssd.exits import EXIT_OK


def main(config_path: Path) -> int:
    config = load(config_path)
    sources = run(known_sources(config))
    titles = {source.url: source.feed_title for source in sources if source.feed_title}
    feed_urls = {source.url: source.feed_url for source in sources if source.feed_url}
    print(opml.render(config.feeds, utcnow(), feed_titles=titles, feed_urls=feed_urls))
    return EXIT_OK


def cli(path: Path, args: argparse.Namespace) -> int:
    """``rssd`` with this command's parsed arguments (rssd/cli.py's registry)."""
    return main(path)
