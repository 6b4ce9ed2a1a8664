"""``rssd export-opml``: config.toml's feeds as OPML 2.0 on stdout, for another reader
or for ``rssd import-opml`` elsewhere. The feeds come from the config; the database, if
there is one, only lends the feeds' own titles to those without a ``name``."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rssd.clock import utcnow
from rssd.commands import opml
from rssd.commands.context import load, reader
from rssd.commands.errors import CommandError
from rssd.exits import EXIT_OK
from rssd.models.config import Config
from rssd.models.dto import Source
from rssd.repo.sources import SourceRepo


async def known_sources(config: Config) -> list[Source]:
    """The database's sources (their own titles, the feeds their pages led to); none when
    there is no usable database (a config not run yet exports fine)."""
    try:
        async with reader(config) as db:
            return await SourceRepo(db).list()
    except CommandError:
        return []


def main(config_path: Path) -> int:
    config = load(config_path)
    sources = asyncio.run(known_sources(config))
    titles = {source.url: source.feed_title for source in sources if source.feed_title}
    feed_urls = {source.url: source.feed_url for source in sources if source.feed_url}
    print(opml.render(config.feeds, utcnow(), feed_titles=titles, feed_urls=feed_urls))
    return EXIT_OK


def cli(path: Path, args: argparse.Namespace) -> int:
    """``rssd`` with this command's parsed arguments (rssd/cli.py's registry)."""
    return main(path)
