"""A test's own HTTP server on a loopback address: an aiohttp app started on a port the
system picks, the one way every test server here starts."""

from __future__ import annotations

from aiohttp import web


async def listen(runner: web.AppRunner, host: str = "127.0.0.1", port: int = 0) -> int:
    """Serve ``runner``'s app on ``host`` too; the port it got (``port`` 0: any free one)."""
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None
    return int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]


async def serve(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host``; its runner (``cleanup()`` stops it) and its port."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    return runner, await listen(runner, host, port)
