"""Fetcher: one source -> FetchResult, over a real loopback server and a real parse pool."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from rssd import PROJECT_URL, __version__
from rssd.fetch.digest import content_digest
from rssd.fetch.fetcher import Fetcher, FetchResult, HostLimiter, Outcome, Validators
from rssd.fetch.parse import ParsePool
from rssd.models.config import Config
from rssd.models.dto import ErrorCode, FetchJob, FetchJobStatus, FetchMeta, Source
from tests.conftest import FeedServer, rss
from tests.support.config import make_config

FEED = rss([{"guid": "urn:test:a", "title": "A"}, {"guid": "urn:test:b", "title": "B"}]).encode()


@pytest.fixture(scope="module")
def pool() -> Iterator[ParsePool]:
    """One parse pool for the module; Fetcher does not close a pool it was given."""
    parse_pool = ParsePool(workers=2, timeout=60.0)  # a hang guard: these documents are small
    try:
        yield parse_pool
    finally:
        parse_pool.close()


def source(url: str, *, source_id: int = 1, timeout: float = 10.0) -> Source:
    return Source(
        id=source_id,
        url=url,
        name=None,
        interval_minutes=60,
        timeout_seconds=timeout,
        enabled=True,
        created_at="2026-01-01T00:00:00.000Z",
        updated_at="2026-01-01T00:00:00.000Z",
    )


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, [])


@pytest.fixture
async def fetcher(config: Config, pool: ParsePool) -> AsyncIterator[Fetcher]:
    async with Fetcher(config, pool) as started:
        yield started


async def test_200_is_parsed_with_its_metadata(feed_server: FeedServer, fetcher: Fetcher) -> None:
    url = feed_server.static(
        "/feed", FEED, headers={"ETag": '"1"', "Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    result = await fetcher.fetch(source(url), Validators())
    assert result.outcome is Outcome.PARSED
    assert result.error_code is None
    assert [post.external_id for post in result.posts] == ["urn:test:a", "urn:test:b"]
    assert [post.title for post in result.posts] == ["A", "B"]
    assert result.meta == FetchMeta(
        http_status=200,
        etag='"1"',
        last_modified="Wed, 21 Oct 2015 07:28:00 GMT",
        content_hash=content_digest(FEED),
        bytes=len(FEED),
        final_url=url,
    )
    assert result.without_posts().posts == ()
    assert result.without_posts().meta == result.meta


async def test_user_agent_names_rssd_and_its_version(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    """The default names rssd, its version, its home and the feed's subscribers."""
    url = feed_server.static("/feed", FEED)
    await fetcher.fetch(source(url), Validators(), subscribers=3)
    agent = feed_server.requests[-1].headers["User-Agent"]
    assert agent == f"rssd/{__version__} (+{PROJECT_URL}; 3 subscribers)"
    await fetcher.fetch(source(url), Validators(), subscribers=1)
    assert feed_server.requests[-1].headers["User-Agent"].endswith("; 1 subscriber)")


async def test_a_configured_user_agent_is_sent_as_is(
    feed_server: FeedServer, pool: ParsePool, tmp_path: Path
) -> None:
    url = feed_server.static("/feed", FEED)
    config = make_config(tmp_path, [url], user_agent="MyReader/2 (+https://me.example)")
    async with Fetcher(config, pool) as fetcher:
        await fetcher.fetch(source(url), Validators(), subscribers=3)
    assert feed_server.requests[-1].headers["User-Agent"] == "MyReader/2 (+https://me.example)"


@pytest.mark.parametrize(
    ("response_headers", "etag", "last_modified"),
    [
        ({}, '"old"', "Tue, 20 Oct 2015 07:28:00 GMT"),  # validators carried forward
        ({"ETag": '"new"'}, '"new"', "Tue, 20 Oct 2015 07:28:00 GMT"),  # a fresh ETag wins
    ],
)
async def test_304_is_not_modified_and_carries_validators_forward(
    feed_server: FeedServer,
    fetcher: Fetcher,
    response_headers: dict[str, str],
    etag: str,
    last_modified: str,
) -> None:
    async def not_modified(request: web.Request) -> web.StreamResponse:
        assert request.headers["If-None-Match"] == '"old"'
        assert request.headers["If-Modified-Since"] == "Tue, 20 Oct 2015 07:28:00 GMT"
        return web.Response(status=304, headers=response_headers)

    url = feed_server.route("/feed", not_modified)
    validators = Validators('"old"', "Tue, 20 Oct 2015 07:28:00 GMT", "e:abc")
    result = await fetcher.fetch(source(url), validators)
    assert result.outcome is Outcome.NOT_MODIFIED
    assert result.posts == ()
    assert result.meta == FetchMeta(
        http_status=304,
        etag=etag,
        last_modified=last_modified,
        content_hash="e:abc",
        bytes=0,
        final_url=url,
    )


async def test_parse_workers_start_with_the_first_body_to_parse(
    feed_server: FeedServer, config: Config
) -> None:
    """A pass of 304s never pays for the forkserver and the workers."""

    async def not_modified(request: web.Request) -> web.StreamResponse:
        return web.Response(status=304, headers={"ETag": '"1"'})

    unchanged = feed_server.route("/unchanged", not_modified)
    changed = feed_server.static("/changed", FEED)
    own_pool = ParsePool(workers=1, timeout=10.0)
    try:
        async with Fetcher(config, own_pool) as fetcher:
            result = await fetcher.fetch(source(unchanged), Validators('"1"'))
            assert result.outcome is Outcome.NOT_MODIFIED
            assert not own_pool.started
            result = await fetcher.fetch(source(changed, source_id=2), Validators())
            assert result.outcome is Outcome.PARSED
            assert own_pool.started
    finally:
        own_pool.close()


async def test_same_body_hash_is_unchanged_and_not_parsed(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    # Not a feed at all: were it parsed, the outcome would be FAILED/not_a_feed.
    body = b"<html><body>not a feed</body></html>"
    url = feed_server.static("/feed", body, content_type="text/html")
    result = await fetcher.fetch(source(url), Validators(content_hash=content_digest(body)))
    assert result.outcome is Outcome.UNCHANGED
    assert result.error_code is None
    assert result.posts == ()
    assert result.meta.content_hash == content_digest(body)
    assert result.meta.http_status == 200
    assert result.meta.bytes == len(body)


async def test_a_different_hash_is_parsed(feed_server: FeedServer, fetcher: Fetcher) -> None:
    url = feed_server.static("/feed", FEED)
    result = await fetcher.fetch(source(url), Validators(content_hash="e:something-else"))
    assert result.outcome is Outcome.PARSED
    assert len(result.posts) == 2


async def test_parse_failure_is_failed_without_content_hash(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    body = b"<html><head><title>Oops</title></head><body>gone fishing</body></html>"
    url = feed_server.static("/feed", body, content_type="text/html")
    result = await fetcher.fetch(source(url), Validators())
    assert result.outcome is Outcome.FAILED
    assert result.error_code is ErrorCode.NOT_A_FEED
    assert result.error_message
    assert result.meta.content_hash is None  # so the same body is parsed again next time
    assert result.meta.http_status == 200
    assert result.meta.bytes == len(body)
    assert result.posts == ()


async def test_http_failure_is_failed_with_status_and_hints(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    url = feed_server.static(
        "/feed",
        b"slow down",
        status=429,
        headers={"Retry-After": "3600"},
        content_type="text/plain",
    )
    result = await fetcher.fetch(source(url), Validators())
    assert result.outcome is Outcome.FAILED
    assert result.error_code is ErrorCode.RATE_LIMITED
    assert result.meta.http_status == 429
    assert result.meta.final_url == url
    assert result.hints == {"Retry-After": "3600"}


async def test_source_timeout_applies(feed_server: FeedServer, fetcher: Fetcher) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response(body=FEED)

    url = feed_server.route("/feed", hang)
    result = await fetcher.fetch(source(url, timeout=0.5), Validators())
    assert result.outcome is Outcome.FAILED
    assert result.error_code is ErrorCode.TIMEOUT


async def test_unresolvable_host_is_dns(fetcher: Fetcher) -> None:
    # Through Fetcher's own resolver (DaemonThreadResolver), not aiohttp's default.
    result = await fetcher.fetch(source("http://nonexistent.invalid/feed"), Validators())
    assert result.error_code is ErrorCode.DNS


async def test_localhost_resolves_through_the_daemon_resolver(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    feed_server.static("/feed", FEED)
    url = f"http://localhost:{feed_server.port}/feed"
    result = await fetcher.fetch(source(url), Validators())
    assert result.outcome is Outcome.PARSED, result.error_message


async def test_relative_ids_resolve_against_the_configured_url_after_a_move(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        return web.Response(status=301, headers={"Location": "/new/feed"})

    old = feed_server.route("/old/feed", moved)
    new = feed_server.static("/new/feed", rss([{"guid": "post-1", "title": "one"}]))
    via_redirect = await fetcher.fetch(source(old), Validators())
    at_new_url = await fetcher.fetch(source(old), Validators(), fetch_url=new)
    expected_id = feed_server.url("/old/post-1")
    assert via_redirect.moved_permanently
    assert via_redirect.meta.final_url == new
    assert [post.external_id for post in via_redirect.posts] == [expected_id]
    assert [post.external_id for post in at_new_url.posts] == [expected_id]
    assert not at_new_url.moved_permanently


async def test_validators_from_job() -> None:
    assert Validators.from_job(None) == Validators()
    job = FetchJob(
        id=1,
        content_source_id=1,
        status=FetchJobStatus.COMPLETED,
        queued_at="2026-01-01T00:00:00.000Z",
        etag='"e"',
        last_modified="lm",
        content_hash="h",
    )
    assert Validators.from_job(job) == Validators('"e"', "lm", "h")


async def test_bozo_feed_is_parsed_with_a_warning(
    feed_server: FeedServer, fetcher: Fetcher
) -> None:
    body = rss([{"guid": "1", "title": "fish & chips"}])  # a bare & is not well-formed XML
    url = feed_server.static("/feed", body)
    result: FetchResult = await fetcher.fetch(source(url), Validators())
    assert result.outcome is Outcome.PARSED
    assert result.warning
    assert [post.title for post in result.posts] == ["fish & chips"]


# --- concurrency limits ---------------------------------------------------------------


class Gauge:
    """Counts requests in flight per Host header. Each request is held until ``expect``
    requests are in flight at once, so the fetches the limits allow do overlap whatever
    the machine's speed (the hold waits for a count, not for time); a limit below
    ``expect`` never gets there and fails at the test's hang guard."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.total_now = 0
        self.total_peak = 0
        self.reached = asyncio.Event()

    async def handler(self, request: web.Request) -> web.StreamResponse:
        host = request.host.split(":")[0]
        self.now[host] += 1
        self.total_now += 1
        self.peak[host] = max(self.peak[host], self.now[host])
        self.total_peak = max(self.total_peak, self.total_now)
        if self.total_now >= self.expect:
            self.reached.set()
        try:
            await self.reached.wait()
        finally:
            self.now[host] -= 1
            self.total_now -= 1
        return web.Response(body=FEED, content_type="application/rss+xml")


#: Hang guard of the concurrency tests (a limit lower than expected never reaches it).
HANG_GUARD = 120


async def fetch_all(fetcher: Fetcher, urls: list[str]) -> list[FetchResult]:
    return await asyncio.gather(
        *(fetcher.fetch(source(url, source_id=i), Validators()) for i, url in enumerate(urls))
    )


@pytest.mark.parametrize(
    ("limits", "expected_peak"),
    [
        ({"max_per_host": 2, "max_concurrency": 20}, 2),
        ({"max_per_host": 1, "max_concurrency": 20}, 1),
        ({"max_per_host": 10, "max_concurrency": 3}, 3),  # the global semaphore
    ],
)
async def test_fetcher_limits_concurrency(
    feed_server: FeedServer,
    pool: ParsePool,
    tmp_path: Path,
    limits: dict[str, int],
    expected_peak: int,
) -> None:
    """Six concurrent fetches of one host: the server sees at most the limit at once."""
    gauge = Gauge(expect=expected_peak)
    urls = [feed_server.route(f"/f{i}", gauge.handler) for i in range(6)]
    config = make_config(tmp_path, urls, **limits)
    async with asyncio.timeout(HANG_GUARD), Fetcher(config, pool) as fetcher:
        results = await fetch_all(fetcher, urls)
    assert [r.outcome for r in results] == [Outcome.PARSED] * 6
    assert gauge.total_peak == expected_peak


async def test_host_limiter_is_per_host(feed_server: FeedServer) -> None:
    """HostLimiter alone (the session's connector unlimited): one slot per host, two hosts."""
    gauge = Gauge(expect=2)
    feed_server.route("/feed", gauge.handler)
    hosts = ["127.0.0.1", "localhost", "LOCALHOST"]  # host names compare case-insensitively
    urls = [f"http://{host}:{feed_server.port}/feed" for host in hosts for _ in range(3)]
    limiter = HostLimiter(1)

    async def one(client: aiohttp.ClientSession, url: str) -> int:
        async with limiter.hold(url), client.get(url) as response:
            await response.read()
            return response.status

    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with asyncio.timeout(HANG_GUARD), aiohttp.ClientSession(connector=connector) as client:
        statuses = await asyncio.gather(*(one(client, url) for url in urls))
    assert statuses == [200] * len(urls)
    assert gauge.peak == Counter({"127.0.0.1": 1, "localhost": 1})
    assert gauge.total_peak == 2


async def test_host_limiter_keys_an_idn_host_as_its_punycode() -> None:
    """The fetcher's limit and the claims' slots use one host key (rssd.net.hosts)."""
    limiter = HostLimiter(1)
    second = limiter.hold("https://xn--bcher-kva.de/b")
    async with asyncio.timeout(HANG_GUARD), limiter.hold("https://bücher.de/a"):
        waiting = asyncio.ensure_future(second.__aenter__())
        await asyncio.sleep(0.05)
        assert not waiting.done(), "the punycode form got a slot of its own"
    await asyncio.wait_for(waiting, HANG_GUARD)
    await second.__aexit__(None, None, None)


async def test_host_limiter_without_contention_does_not_block() -> None:
    limiter = HostLimiter(2)
    entered = []
    async with asyncio.timeout(HANG_GUARD):  # a blocked hold would wait for ever
        async with (
            limiter.hold("http://a.example/1"),
            limiter.hold("http://a.example/2"),
            limiter.hold("http://b.example/"),
        ):
            entered.append("a, a, b")
        assert held_hosts(limiter) == set(), "idle hosts are forgotten"
        # ... and come back fresh, with their whole limit.
        async with limiter.hold("http://a.example/1"), limiter.hold("http://a.example/2"):
            entered.append("a, a")
            assert held_hosts(limiter) == {"a.example"}
    assert entered == ["a, a, b", "a, a"]
    assert held_hosts(limiter) == set()


def held_hosts(limiter: HostLimiter) -> set[str]:
    # The per-host semaphores are private; that the map empties is the point (test-only).
    return set(getattr(limiter, "_semaphores"))  # noqa: B009


async def test_reconfigure_can_raise_the_per_host_limit(
    feed_server: FeedServer, pool: ParsePool, tmp_path: Path
) -> None:
    gauge = Gauge(expect=3)
    urls = [feed_server.route(f"/f{i}", gauge.handler) for i in range(6)]
    async with (
        asyncio.timeout(HANG_GUARD),
        Fetcher(make_config(tmp_path, urls, max_per_host=1), pool) as fetcher,
    ):
        fetcher.reconfigure(make_config(tmp_path, urls, max_per_host=3))
        results = await fetch_all(fetcher, urls)
    assert [r.outcome for r in results] == [Outcome.PARSED] * 6
    assert gauge.total_peak == 3


async def test_reconfigure_can_lower_the_per_host_limit(
    feed_server: FeedServer, pool: ParsePool, tmp_path: Path
) -> None:
    gauge = Gauge(expect=1)
    urls = [feed_server.route(f"/f{i}", gauge.handler) for i in range(6)]
    async with (
        asyncio.timeout(HANG_GUARD),
        Fetcher(make_config(tmp_path, urls, max_per_host=3), pool) as fetcher,
    ):
        fetcher.reconfigure(make_config(tmp_path, urls, max_per_host=1))
        results = await fetch_all(fetcher, urls)
    assert [r.outcome for r in results] == [Outcome.PARSED] * 6
    assert gauge.total_peak == 1


async def test_reconfigure_adopts_a_new_user_agent(
    feed_server: FeedServer, pool: ParsePool, tmp_path: Path
) -> None:
    url = feed_server.static("/feed", FEED)
    async with Fetcher(make_config(tmp_path, [url]), pool) as fetcher:
        fetcher.reconfigure(make_config(tmp_path, [url], user_agent="rssd-test/2 (reloaded)"))
        await fetcher.fetch(source(url), Validators())
    assert feed_server.requests[-1].headers["User-Agent"] == "rssd-test/2 (reloaded)"
