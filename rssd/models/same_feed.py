"""A feed configured twice: a web page in config.toml whose feed (found on the page) is
also configured by its own URL. The two are one feed: its posts are stored once, under
the feed's own entry, and every place that can tell (``rssd check-config``, ``rssd
status``, the daemon's log) says so. Pure: the commands and the pipeline pass the
sources they read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from msgspec import Struct

from rssd.models.dto import Source
from rssd.models.redact import redact
from rssd.models.urls import normalize_url


class SameFeed(Struct, frozen=True):
    """``page`` (a configured web page) leads to the feed configured as ``feed``."""

    page: Source
    feed: Source

    def describe(self) -> str:
        return (
            f"configured twice: {self.page.id} {redact(self.page.url)} is a page whose feed "
            f"is {self.feed.id} {redact(self.feed.url)}; its posts are stored once, under "
            f"{self.feed.id}: remove one of them from config.toml"
        )


class FeedIndex(Struct, frozen=True):
    """The enabled sources by normalized URL: whose URL a page's feed is. Built once from
    every source, asked once per page (the daemon keeps one until a source changes)."""

    by_url: Mapping[str, Source]

    @classmethod
    def of(cls, sources: Iterable[Source]) -> FeedIndex:
        return cls({normalize_url(s.url): s for s in sources if s.enabled})

    def pair(self, page: Source) -> SameFeed | None:
        """``page`` and the other enabled source its discovered feed is, if any."""
        if not page.enabled or not page.feed_url:
            return None
        feed = self.by_url.get(normalize_url(page.feed_url))
        if feed is None or feed.id == page.id:
            return None
        return SameFeed(page, feed)


def same_feeds(sources: Sequence[Source]) -> list[SameFeed]:
    """Every enabled page whose discovered feed is another enabled source's URL (URLs
    compared normalized), in the pages' id order."""
    index = FeedIndex.of(sources)
    return [pair for s in sorted(sources, key=lambda s: s.id) if (pair := index.pair(s))]


def pages_leading_to(feed_url: str, pages: Iterable[tuple[int, str]]) -> list[int]:
    """The ids among ``pages`` ((id, discovered feed URL) of enabled pages) whose feed is
    ``feed_url``, compared as ``same_feeds`` compares: their subscribers are the feed's
    too, since the page stores no posts of its own (rssd/repo/outbox.py)."""
    pairs = list(pages)
    if not pairs:  # as a rule: no page at all, and the feed's URL need not be parsed
        return []
    wanted = normalize_url(feed_url)
    return sorted(page_id for page_id, found in pairs if normalize_url(found) == wanted)
