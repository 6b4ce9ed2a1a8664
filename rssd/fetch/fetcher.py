"""Fetcher: one source -> FetchResult. Owns the HTTP session, the limits and the parse pool."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import TracebackType

import aiohttp
from yarl import URL

from rssd.fetch.http import (
    FetchError,
    HttpResponse,
    NetworkPolicy,
    RequestLimits,
    get,
    hints,
)
from rssd.fetch.parse import ParsePool
from rssd.fetch.resolver import DaemonThreadResolver
from rssd.models.config import Config
from rssd.models.dto import ErrorCode, FetchJob, FetchMeta, PostCreate, Source
from rssd.net.addresses import AddressClass, IPAddress, address_class

#: Loads the stored item fingerprints of the source being fetched (rssd.repo.seen).
SeenLoader = Callable[[], Awaitable[bytes]]


class Outcome(StrEnum):
    PARSED = "parsed"
    NOT_MODIFIED = "not_modified"  # 304: nothing downloaded, nothing parsed
    UNCHANGED = "unchanged"  # 200 with the same entries or items as last time: not parsed
    FAILED = "failed"


@dataclass(frozen=True)
class FetchResult:
    outcome: Outcome
    meta: FetchMeta
    posts: tuple[PostCreate, ...] = ()
    error_code: ErrorCode | None = None
    error_message: str | None = None
    warning: str | None = None
    ttl_minutes: int | None = None
    moved_permanently: bool = False
    hints: Mapping[str, str] = field(default_factory=dict)
    #: Fingerprints of the parsed document's items, to store with its posts (None: not
    #: parsed, the stored ones stand).
    seen_items: bytes | None = None
    #: Items left unparsed because the last document had them byte for byte.
    items_skipped: int = 0

    def without_posts(self) -> FetchResult:
        """The result minus its posts, for keeping after they are stored: a report held
        for a run summary must not keep every post of every feed alive."""
        return replace(self, posts=())


@dataclass(frozen=True)
class Validators:
    """What the last successful fetch tells the next one (conditional GET, body hash)."""

    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None

    @classmethod
    def from_job(cls, job: FetchJob | None) -> Validators:
        if job is None:
            return cls()
        return cls(job.etag, job.last_modified, job.content_hash)


class HostLimiter:
    """At most ``limit`` concurrent requests per host, waited for before the clock starts."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._users: defaultdict[str, int] = defaultdict(int)

    @asynccontextmanager
    async def hold(self, url: str) -> AsyncIterator[None]:
        host = (URL(url).host or "").lower()
        semaphore = self._semaphores.setdefault(host, asyncio.Semaphore(self._limit))
        self._users[host] += 1
        try:
            async with semaphore:
                yield
        finally:
            self._users[host] -= 1
            if not self._users[host]:  # forget idle hosts: the map stays small for years
                del self._users[host]
                del self._semaphores[host]


class Fetcher:
    """The global semaphore, the per-host limit, one ClientSession and one ParsePool."""

    def __init__(
        self,
        config: Config,
        parse_pool: ParsePool | None = None,
        classify: Callable[[IPAddress], AddressClass] = address_class,
    ) -> None:
        self.config = config
        #: How addresses are classified for the redirect guard (tests stand a loopback
        #: address in for a public one; production uses rssd.net.addresses as it is).
        self._classify = classify
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        self._hosts = HostLimiter(config.max_per_host)
        self._session: aiohttp.ClientSession | None = None
        self._pool = parse_pool or ParsePool(timeout=config.parse_timeout_seconds)
        self._owns_pool = parse_pool is None

    async def __aenter__(self) -> Fetcher:
        # No limits in the connector: rssd's own semaphores limit (and a reload can change
        # them); the connector only pools connections.
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=0,
            ttl_dns_cache=300,
            resolver=DaemonThreadResolver(),
        )
        self._pool.start_soon()
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
        if self._owns_pool:
            self._pool.close()

    def reconfigure(self, config: Config) -> None:
        """Adopt new limits for fetches that start from now on (after a reload)."""
        if config.max_concurrency != self.config.max_concurrency:
            self._semaphore = asyncio.Semaphore(config.max_concurrency)
        if config.max_per_host != self.config.max_per_host:
            self._hosts = HostLimiter(config.max_per_host)
        self.config = config

    async def fetch(
        self,
        source: Source,
        validators: Validators,
        fetch_url: str | None = None,
        seen: SeenLoader | None = None,
    ) -> FetchResult:
        """Download under both limits, then parse still holding the global slot.

        The per-host slot covers the download only (politeness is about sockets). The global
        slot covers the parse too, so at most ``max_concurrency`` bodies wait in memory for
        the parse workers: without it a cold start of 1,000 feeds downloaded far faster
        than it parsed and peaked at 245 MB. ``seen`` loads the fingerprints of the items
        parsed last time; it is called only for a body that has to be parsed.
        """
        assert self._session is not None, "use Fetcher as an async context manager"
        limits = RequestLimits(
            timeout=source.timeout_seconds,
            max_bytes=self.config.max_body_bytes,
            max_redirects=self.config.max_redirects,
        )
        async with self._semaphore:
            try:
                async with self._hosts.hold(fetch_url or source.url):
                    response = await get(
                        self._session,
                        fetch_url or source.url,
                        limits,
                        etag=validators.etag,
                        last_modified=validators.last_modified,
                        user_agent=self.config.user_agent,
                        network=NetworkPolicy(
                            allow_private=self.config.allow_private_networks,
                            classify=self._classify,
                        ),
                        moved_from=source.url if fetch_url not in (None, source.url) else None,
                    )
            except FetchError as exc:
                return FetchResult(
                    outcome=Outcome.FAILED,
                    meta=FetchMeta(http_status=exc.http_status, final_url=exc.final_url),
                    error_code=exc.code,
                    error_message=exc.message,
                    hints=hints(exc.headers),
                )
            return await self._interpret(response, validators, base_url=source.url, seen=seen)

    async def _interpret(
        self,
        response: HttpResponse,
        validators: Validators,
        *,
        base_url: str,
        seen: SeenLoader | None,
    ) -> FetchResult:
        if response.not_modified:
            # Carry the validators forward so the next fetch is conditional too.
            meta = FetchMeta(
                http_status=304,
                etag=response.etag or validators.etag,
                last_modified=response.last_modified or validators.last_modified,
                content_hash=validators.content_hash,
                bytes=0,
                final_url=response.final_url,
            )
            return FetchResult(
                Outcome.NOT_MODIFIED,
                meta,
                moved_permanently=response.moved_permanently,
                hints=response.hints,
            )
        meta = FetchMeta(
            http_status=response.status,
            etag=response.etag,
            last_modified=response.last_modified,
            content_hash=response.content_hash,
            bytes=response.size,
            final_url=response.final_url,
        )
        if validators.content_hash and response.content_hash == validators.content_hash:
            return FetchResult(
                Outcome.UNCHANGED,
                meta,
                moved_permanently=response.moved_permanently,
                hints=response.hints,
            )
        # The base for relative links and ids is the configured URL, not where a redirect
        # led: feedparser resolves a guid like "post-1" against it, and the post's identity
        # must not change when the feed moves (or is fetched at its new URL).
        parsed = await self._pool.parse(
            response.body,
            base_url,
            response.content_type,
            sanitize=self.config.sanitize_html,
            seen=await seen() if seen is not None else b"",
        )
        if parsed.error_code is not None:
            # No content_hash: a body that failed to parse must be parsed again next time.
            return FetchResult(
                Outcome.FAILED,
                meta.model_copy(update={"content_hash": None}),
                error_code=parsed.error_code,
                error_message=parsed.message,
                hints=response.hints,
            )
        return FetchResult(
            Outcome.UNCHANGED if parsed.all_seen else Outcome.PARSED,
            meta,
            posts=parsed.posts,
            warning=parsed.warning,
            ttl_minutes=parsed.ttl_minutes,
            moved_permanently=response.moved_permanently,
            hints=response.hints,
            seen_items=parsed.seen_items,
            items_skipped=parsed.skipped,
        )
