"""Fetcher: one source -> FetchResult. Owns the HTTP session, the limits and the parse pool."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from types import TracebackType

import aiohttp
from msgspec import Struct, field
from msgspec.structs import replace

from rssd import metrics
from rssd.fetch.discover import FeedLink, PageLinks, resolve_links
from rssd.fetch.http import (
    FetchError,
    HttpResponse,
    NetworkPolicy,
    RequestLimits,
    get,
    hints,
)
from rssd.fetch.parse import ParsePool
from rssd.models.config import Config
from rssd.models.dto import ErrorCode, FetchJob, FetchMeta, PostCreate, Source
from rssd.models.redact import same_origin, strip_userinfo, with_credentials
from rssd.net.addresses import AddressClass, IPAddress, address_class
from rssd.net.hosts import host_key
from rssd.net.resolver import DaemonThreadResolver

#: Loads the stored item fingerprints of the source being fetched (rssd.repo.seen).
SeenLoader = Callable[[], Awaitable[bytes]]
#: Awaited with a URL just before its request starts, holding the host's slot: the
#: cluster-wide gap between requests to one host (rssd.repo.hosts) lives behind it.
RequestGate = Callable[[str], Awaitable[None]]


class Manners(Struct, frozen=True):
    """How one fetch presents itself and waits its turn: the User-Agent (the feed's
    subscriber count in it) and the host gate, if any."""

    user_agent: str
    gate: RequestGate | None = None


class Outcome(StrEnum):
    PARSED = "parsed"
    NOT_MODIFIED = "not_modified"  # 304: nothing downloaded, nothing parsed
    UNCHANGED = "unchanged"  # 200 with the same entries or items as last time: not parsed
    FAILED = "failed"


class FetchResult(Struct, frozen=True):
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
    #: The parsed document's own title (None when nothing was parsed).
    feed_title: str | None = None
    #: The parser whose result this is (rssd.fetch.worker.Parser; None: nothing parsed).
    parser: str | None = None
    #: Set when this fetch looked at the source's page for its feed (rssd.fetch.discover)
    #: and succeeded: ``feed_url`` is the feed the page links to, or None when the
    #: configured URL now answers a feed itself. The caller records it.
    discovered: bool = False
    feed_url: str | None = None

    def without_posts(self) -> FetchResult:
        """The result minus its posts, for keeping after they are stored: a report held
        for a run summary must not keep every post of every feed alive."""
        return replace(self, posts=()) if self.posts else self


class Validators(Struct, frozen=True):
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

    def hold(self, url: str) -> _HostSlot:
        return _HostSlot(self, host_key(url))

    async def _enter(self, host: str) -> None:
        semaphore = self._semaphores.get(host)
        if semaphore is None:
            semaphore = self._semaphores[host] = asyncio.Semaphore(self._limit)
        self._users[host] += 1
        try:
            await semaphore.acquire()
        except BaseException:
            self._leave(host, acquired=False)
            raise

    def _leave(self, host: str, *, acquired: bool = True) -> None:
        if acquired:
            self._semaphores[host].release()
        self._users[host] -= 1
        if not self._users[host]:  # forget idle hosts: the map stays small for years
            del self._users[host]
            del self._semaphores[host]


class _HostSlot:
    """``async with limiter.hold(url)``: a plain class, not a generator-based context
    manager (its generator and frames showed on every fetch's profile)."""

    __slots__ = ("_host", "_limiter")

    def __init__(self, limiter: HostLimiter, host: str) -> None:
        self._limiter, self._host = limiter, host

    async def __aenter__(self) -> None:
        await self._limiter._enter(self._host)

    async def __aexit__(self, *exc: object) -> None:
        self._limiter._leave(self._host)


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
        self._headers = _headers_by_url(config)

    async def __aenter__(self) -> Fetcher:
        # No limits in the connector: rssd's own semaphores limit (and a reload can change
        # them); the connector only pools connections.
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=0,
            ttl_dns_cache=300,
            resolver=DaemonThreadResolver(),
        )
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
            await self._pool.aclose()

    def prepare_parsing(self) -> None:
        """Make the parse pool's executor now (ParsePool.prepare): the service's start."""
        self._pool.prepare()

    def reconfigure(self, config: Config) -> None:
        """Adopt new limits for fetches that start from now on (after a reload)."""
        if config.max_concurrency != self.config.max_concurrency:
            self._semaphore = asyncio.Semaphore(config.max_concurrency)
        if config.max_per_host != self.config.max_per_host:
            self._hosts = HostLimiter(config.max_per_host)
        self.config = config
        self._headers = _headers_by_url(config)

    async def fetch(
        self,
        source: Source,
        validators: Validators,
        fetch_url: str | None = None,
        seen: SeenLoader | None = None,
        feed_url: str | None = None,
        *,
        subscribers: int = 0,
        gate: RequestGate | None = None,
    ) -> FetchResult:
        """Download under both limits, then parse still holding the global slot.

        ``subscribers``: how many users subscribe to the feed, named in the default
        User-Agent; ``gate``: awaited before each request, under the host's slot.

        ``feed_url``: the feed the source's page led to last time (rssd.fetch.discover),
        fetched directly; the page is asked again only when it fails. A page answered
        where a feed was expected is followed to the first feed it links to.

        The per-host slot covers the download only (politeness is about sockets). The global
        slot covers the parse too, so at most ``max_concurrency`` bodies wait in memory for
        the parse workers: without it a cold start downloaded far faster than it parsed,
        and held every body in memory meanwhile. ``seen`` loads the fingerprints of the items
        parsed last time; it is called only for a body that has to be parsed.
        """
        assert self._session is not None, "use Fetcher as an async context manager"
        async with self._semaphore:
            # The base for relative links and ids: the feed's URL as configured (not where
            # a redirect led: a post's identity must not change when the feed moves), or
            # the feed a page led to; never with the credentials in it.
            base = strip_userinfo(feed_url or source.url)
            target = fetch_url or feed_url or source.url
            manners = Manners(self.config.agent_for(subscribers), gate)
            result, page = await self._get(source, target, validators, base, seen, manners=manners)
            if page is None:
                if feed_url is None or result.outcome is not Outcome.FAILED:
                    return result
                # The discovered feed failed: ask the page again where its feed is now.
                result_page, page = await self._get(
                    source,
                    source.url,
                    Validators(),
                    strip_userinfo(source.url),
                    seen,
                    manners=manners,
                )
                if page is None:
                    if result_page.outcome is Outcome.FAILED:
                        return result  # the page failed too: the feed's failure stands
                    return replace(result_page, discovered=True, feed_url=None)
            return await self._follow_page(
                source, result, page, validators, seen=seen, known=feed_url, manners=manners
            )

    async def _follow_page(
        self,
        source: Source,
        result: FetchResult,
        page: tuple[FeedLink, ...],
        validators: Validators,
        *,
        seen: SeenLoader | None,
        known: str | None,
        manners: Manners,
    ) -> FetchResult:
        """``result`` was an HTML page linking to ``page``'s feeds: fetch the first."""
        if not page:
            return result
        chosen = with_credentials(page[0].href, source.url)
        if chosen == known:
            return result  # the page still points at the feed that failed
        # Validators of another URL mean nothing here; an identical body still does.
        fresh = Validators(content_hash=validators.content_hash)
        found, again = await self._get(
            source, chosen, fresh, strip_userinfo(chosen), seen, manners=manners
        )
        if found.outcome is Outcome.FAILED or again is not None:
            linked = f"{found.error_message} (at {chosen}, the feed the page {source.url} links to)"
            return replace(found, error_message=linked)
        return replace(found, discovered=True, feed_url=chosen)

    async def _get(
        self,
        source: Source,
        url: str,
        validators: Validators,
        base: str,
        seen: SeenLoader | None,
        *,
        manners: Manners,
    ) -> tuple[FetchResult, tuple[FeedLink, ...] | None]:
        """One download and parse; the second value: the feeds of an HTML page (resolved
        against where it was served from), None when the body was no such page."""
        assert self._session is not None
        limits = RequestLimits(
            timeout=source.timeout_seconds,
            max_bytes=self.config.max_body_bytes,
            max_redirects=self.config.max_redirects,
        )
        # A feed's own headers (a token) go to its own origin only, never to a feed its
        # page links to on another host. Most feeds have none: no URL is split for them.
        headers = self._headers.get(source.url)
        if headers is not None and not same_origin(url, source.url):
            headers = None
        try:
            async with self._hosts.hold(url):
                if manners.gate is not None:
                    await manners.gate(url)
                response = await get(
                    self._session,
                    url,
                    limits,
                    etag=validators.etag,
                    last_modified=validators.last_modified,
                    user_agent=manners.user_agent,
                    headers=headers,
                    network=NetworkPolicy(
                        allow_private=self.config.allow_private_networks,
                        classify=self._classify,
                    ),
                    # A URL other than the configured one came from a publisher (a
                    # permanent redirect, or the feed a page links to): checked as a hop.
                    moved_from=None if url == source.url else source.url,
                )
        except FetchError as exc:
            failed = FetchResult(
                outcome=Outcome.FAILED,
                meta=FetchMeta(http_status=exc.http_status, final_url=exc.final_url),
                error_code=exc.code,
                error_message=exc.message,
                hints=hints(exc.headers),
            )
            return failed, None
        result, page = await self._interpret(response, validators, base_url=base, seen=seen)
        links = resolve_links(page, response.final_url) if page is not None else None
        return result, links

    async def _interpret(
        self,
        response: HttpResponse,
        validators: Validators,
        *,
        base_url: str,
        seen: SeenLoader | None,
    ) -> tuple[FetchResult, PageLinks | None]:
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
            ), None
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
            ), None
        parsed = await self._pool.parse(
            response.body,
            base_url,
            response.content_type,
            sanitize=self.config.sanitize_html,
            seen=await seen() if seen is not None else b"",
        )
        if parsed.parser is not None:
            metrics.PARSES.labels(parsed.parser.value).inc()
        if parsed.error_code is not None:
            # No content_hash: a body that failed to parse must be parsed again next time.
            return FetchResult(
                Outcome.FAILED,
                replace(meta, content_hash=None),
                error_code=parsed.error_code,
                error_message=parsed.message,
                hints=response.hints,
            ), parsed.page
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
            feed_title=parsed.title,
            parser=parsed.parser.value if parsed.parser is not None else None,
        ), None


def _headers_by_url(config: Config) -> dict[str, dict[str, str]]:
    """The configured request headers by feed URL as written (content_sources.url is the
    config's string): a dict lookup per fetch, not a scan of 10,000 feeds."""
    return {feed.url: feed.headers for feed in config.feeds if feed.headers}
