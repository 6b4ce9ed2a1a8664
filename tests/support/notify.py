"""A NOTIFY_SOCKET bound by the test: systemd's side of sd_notify (READY, WATCHDOG, ...)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.support.process import WAIT, Daemon


class NotifyListener:
    """An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        #: What the daemon is told: a path, or ``@name`` for the abstract namespace.
        self.address = address
        self.datagrams: list[dict[str, str]] = []
        self.raw: list[str] = []
        self._grew = asyncio.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        bind_to = "\0" + address[1:] if address.startswith("@") else address
        self._sock.bind(bind_to)
        self._sock.setblocking(False)
        self._task = asyncio.create_task(self._receive())

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self._sock, 65536)
            text = data.decode()
            self.raw.append(text)
            fields: dict[str, str] = {}
            for line in text.split("\n"):
                key, sep, value = line.partition("=")
                if sep:
                    fields[key] = value
            self.datagrams.append(fields)
            self._grew.set()

    def find(self, key: str, value: str | None = None, start: int = 0) -> int | None:
        for index in range(start, len(self.datagrams)):
            datagram = self.datagrams[index]
            if key in datagram and (value is None or datagram[key] == value):
                return index
        return None

    async def wait(
        self, key: str, value: str | None = None, *, start: int = 0, daemon: Daemon | None = None
    ) -> int:
        """Index of the first datagram from ``start`` on with ``key`` (= ``value``)."""
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    self._grew.clear()
                    found = self.find(key, value, start)
                    if found is not None:
                        return found
                    await self._grew.wait()
        except TimeoutError:
            pytest.fail(
                f"no sd_notify {key}={value or '*'} after datagram {start} within {WAIT}s;"
                f"\ndatagrams: {self.raw}\n{daemon.log() if daemon else ''}"
            )

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._sock.close()
        self._unlink()

    def _unlink(self) -> None:
        if not self.address.startswith("@"):
            Path(self.address).unlink(missing_ok=True)


@asynccontextmanager
async def notify_socket(address: str) -> AsyncIterator[NotifyListener]:
    listener = NotifyListener(address)
    try:
        yield listener
    finally:
        await listener.close()


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
