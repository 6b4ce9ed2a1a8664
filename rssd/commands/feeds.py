"""Which source a FEED argument names, for ``rssd fetch`` and ``rssd posts``: an id, a URL
(scheme and host compared case-insensitively) or a name (as in config.toml; case ignored)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rssd.commands.errors import CommandError
from rssd.exits import EXIT_USAGE
from rssd.models.dto import Source
from rssd.models.redact import redact
from rssd.models.urls import normalize_url
from rssd.repo.db import Database
from rssd.repo.sources import SourceRepo

if TYPE_CHECKING:
    from rssd.models.config import Config


def _url_key(text: str) -> str | None:
    if "://" not in text:
        return None
    try:
        return normalize_url(text)
    except (ValueError, TypeError, AttributeError):
        return None


async def resolve(db: Database, config: Callable[[], Config], feed: str) -> Source:
    """The source with this id, URL or name.

    A URL or name that is in config.toml (``config()``, asked for only then) but not yet in
    the database gets a hint instead of a bare "unknown": the daemon adds new feeds when it
    (re)loads the config. A name two feeds share is refused, listing their ids.
    """
    repo = SourceRepo(db)
    text = feed.strip()
    if text.isdigit():
        source = await repo.get(int(text))
        if source is None:
            raise CommandError(f"no feed with id {text} (see `rssd status`)", EXIT_USAGE)
        return source
    sources = await repo.names()
    wanted = _url_key(text)
    if wanted is not None:
        for source_id, url, _, _ in sources:
            if normalize_url(url) == wanted:
                return await _get(repo, source_id)
        if any(normalize_url(f.url) == wanted for f in config().feeds):
            raise CommandError(
                f"{redact(text)} is in config.toml but not in the database yet: a running daemon "
                f"adds it within seconds; otherwise run `rssd run --once`",
                EXIT_USAGE,
            )
        raise CommandError(f"no feed with URL {redact(text)} (see `rssd status`)", EXIT_USAGE)
    key = text.casefold()
    # The configured name, else the title the feed gives itself (as status shows it).
    named = [i for i, _, name, title in sources if (name or title or "").casefold() == key]
    if len(named) == 1:
        return await _get(repo, named[0])
    if named:
        ids = ", ".join(map(str, named))
        raise CommandError(
            f"{len(named)} feeds are named {redact(text)!r} (ids {ids}): use an id", EXIT_USAGE
        )
    if any(f.name is not None and f.name.casefold() == key for f in config().feeds):
        raise CommandError(
            f"the feed named {redact(text)!r} is in config.toml but not in the database yet: a "
            f"running daemon adds it within seconds; otherwise run `rssd run --once`",
            EXIT_USAGE,
        )
    raise CommandError(
        f"no feed with id, URL or name {redact(text)!r} (see `rssd status`)", EXIT_USAGE
    )


async def _get(repo: SourceRepo, source_id: int) -> Source:
    """A source just listed: sources are disabled, never deleted."""
    source = await repo.get(source_id)
    if source is None:
        raise AssertionError(f"source {source_id} listed but not found")
    return source


def removed_from_config(source: Source, config: Config) -> bool:
    """The source is in the database but its feed is no longer in config.toml."""
    key = normalize_url(source.url)
    return all(normalize_url(f.url) != key for f in config.feeds)
