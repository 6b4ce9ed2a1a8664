"""Shared fixtures: a real aiohttp server on 127.0.0.1, real SQLite files in tmp_path, the
daemons a test starts (killed at teardown); and ``--reverse`` (tests/README.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from rssd import logs
from rssd.repo.db import Database
from rssd.repo.open import open_database
from tests.support.loopback import serve
from tests.support.postgres import fresh_database
from tests.support.process import Daemons
from tests.support.webhooks import Receiver


@pytest.fixture(autouse=True)
def _logging_kept() -> Iterator[None]:
    """Each test starts with the logging the one before it found: a command run in-process
    (``rssd fetch`` sets the level to ``error``) must not hide a later test's events."""
    with logs.kept():
        yield


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reverse",
        action="store_true",
        help="run the collected tests in reverse order (checks order independence)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--reverse"):
        items.reverse()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FIXTURES = Path(__file__).parent / "fixtures"


class FeedServer:
    """A loopback HTTP server whose routes a test sets: ``server.route("/x", handler)``."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: dict[str, int] = {}
        self.requests: list[web.Request] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def route(self, path: str, handler: Handler) -> str:
        self.routes[path] = handler
        return self.url(path)

    def static(
        self,
        path: str,
        body: bytes | str,
        *,
        content_type: str = "application/rss+xml",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Serve a fixed body; honours If-None-Match when an ETag header is given."""
        data = body.encode() if isinstance(body, str) else body

        async def handler(request: web.Request) -> web.StreamResponse:
            etag = (headers or {}).get("ETag")
            if etag and request.headers.get("If-None-Match") == etag:
                return web.Response(status=304, headers={"ETag": etag})
            return web.Response(
                body=data, status=status, content_type=content_type, headers=headers
            )

        return self.route(path, handler)

    def held(self, path: str) -> tuple[str, asyncio.Event]:
        """An empty feed that answers only once the returned event is set: a fetch held
        in flight for as long as a test needs."""
        answer = asyncio.Event()

        async def handler(request: web.Request) -> web.StreamResponse:
            await answer.wait()
            return web.Response(body=rss([]), content_type="application/rss+xml")

        return self.route(path, handler), answer

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        self.requests.append(request)
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text="no such route")
        return await handler(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner, self.port = await serve(app)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def feed_server() -> AsyncIterator[FeedServer]:
    server = FeedServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules marked ``both_backends`` run every test that opens a database twice: on a
    SQLite file and on a fresh PostgreSQL database."""
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_backends"
    ):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
async def db_target(backend: str, tmp_path: Path) -> AsyncIterator[Path | str]:
    """What ``database =`` names for this test: a SQLite file, or a PostgreSQL URL."""
    if backend == "sqlite":
        yield tmp_path / "rssd.sqlite3"
        return
    async with fresh_database() as url:
        yield url


@pytest.fixture
async def db(db_target: Path | str) -> AsyncIterator[Database]:
    database = await open_database(db_target)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on loopback that verifies every request (tests/support/webhooks.py)."""
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def daemons() -> AsyncIterator[Daemons]:
    """Start processes with ``daemons.start(config)`` / ``daemons.spawn(...)``; every one
    still running at the end of the test is killed with its process group."""
    started = Daemons()
    try:
        yield started
    finally:
        await started.close()


def rss(items: list[dict[str, str]], *, title: str = "Test feed") -> str:
    """A small RSS 2.0 document; each item dict maps element name -> text."""
    body = "".join(
        "<item>" + "".join(f"<{k}>{v}</{k}>" for k, v in item.items()) + "</item>" for item in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>http://example.org/</link>"
        f"<description>test</description>{body}</channel></rss>"
    )
