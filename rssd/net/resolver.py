"""DNS lookups in daemon threads.

aiohttp's default resolver runs getaddrinfo in the loop's default ThreadPoolExecutor. A
lookup that hangs then holds the process open at exit: Python 3.11's ``asyncio.run`` and
``concurrent.futures``' exit hook both wait for executor threads without limit. A lookup
here runs in its own daemon thread, which never blocks shutdown; the fetch's own timeout
still bounds how long we wait for it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult


class DaemonThreadResolver(AbstractResolver):
    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()

        def lookup() -> None:
            try:
                infos = socket.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM, family=family, flags=socket.AI_ADDRCONFIG
                )
            except BaseException as exc:  # delivered to the awaiting coroutine
                error = exc
                loop.call_soon_threadsafe(_set_exception, future, error)
            else:
                loop.call_soon_threadsafe(_set_result, future, infos)

        threading.Thread(target=lookup, name=f"resolve-{host}", daemon=True).start()
        try:
            infos = await future
        except socket.gaierror as exc:
            raise OSError(exc.errno, f"{exc.strerror} ({host})") from exc
        results: list[ResolveResult] = []
        for fam, _, proto, _, address in infos:
            if fam == socket.AF_INET6 and address[3]:  # scoped link-local address
                resolved_host = f"{address[0]}%{address[3]}"
            else:
                resolved_host = address[0]
            results.append(
                ResolveResult(
                    hostname=host,
                    host=resolved_host,
                    port=address[1],
                    family=fam,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not results:
            raise OSError(0, f"no addresses for {host}")
        return results

    async def close(self) -> None:
        return None


def _set_result(future: asyncio.Future[list[Any]], value: list[Any]) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[list[Any]], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
