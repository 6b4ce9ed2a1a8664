"""Which source a FEED argument (an id or a URL) names, for ``rssd fetch`` and ``posts``."""

from __future__ import annotations

from rssd.commands.errors import EXIT_USAGE, CommandError
from rssd.models.config import Config, normalize_url
from rssd.models.dto import Source
from rssd.models.redact import redact
from rssd.repo.db import Database
from rssd.repo.sources import SourceRepo


async def resolve(db: Database, config: Config, feed: str) -> Source:
    """The source with this id or URL (scheme and host compared case-insensitively).

    A URL that is in config.toml but not yet in the database gets a hint instead of a bare
    "unknown": the daemon adds new feeds when it (re)loads the config.
    """
    repo = SourceRepo(db)
    text = feed.strip()
    if text.isdigit():
        source = await repo.get(int(text))
        if source is None:
            raise CommandError(f"no feed with id {text} (see `rssd status`)", EXIT_USAGE)
        return source
    try:
        wanted = normalize_url(text)
    except (ValueError, TypeError, AttributeError):
        raise CommandError(f"not a feed id or URL: {redact(feed)!r}", EXIT_USAGE) from None
    for source in await repo.list():
        if normalize_url(source.url) == wanted:
            return source
    if any(normalize_url(f.url) == wanted for f in config.feeds):
        raise CommandError(
            f"{redact(text)} is in config.toml but not in the database yet: a running daemon adds "
            f"it within seconds; otherwise run `rssd run --once`",
            EXIT_USAGE,
        )
    raise CommandError(f"no feed with URL {redact(text)} (see `rssd status`)", EXIT_USAGE)
