"""``rssd export-opml``: config.toml's feeds as OPML 2.0 on stdout, for another reader
or for ``rssd import-opml`` elsewhere. The feeds come from the config; the database, if
there is one, only lends the feeds' own titles to those without a ``name``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rssd.clock import utcnow
from rssd.commands import opml
from rssd.commands.context import load, reader
from rssd.commands.errors import EXIT_OK, CommandError
from rssd.models.config import Config
from rssd.repo.sources import SourceRepo


async def feed_titles(config: Config) -> dict[str, str]:
    """URL -> the feed's own title, from the database; none when there is no usable one
    (a config not run yet exports fine)."""
    try:
        async with reader(config) as db:
            sources = await SourceRepo(db).list()
    except CommandError:
        return {}
    return {source.url: source.feed_title for source in sources if source.feed_title}


def main(config_path: Path) -> int:
    config = load(config_path)
    titles = asyncio.run(feed_titles(config))
    print(opml.render(config.feeds, utcnow(), feed_titles=titles))
    return EXIT_OK
