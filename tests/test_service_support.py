"""Helpers for the end-to-end service tests: ``rssd run`` as a real subprocess, its JSON log
read line by line as it comes, and a NOTIFY_SOCKET bound by the test to receive sd_notify.

Every wait has a generous deadline and fails with the captured log (never a hang); no test
asserts on how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

#: How long any single awaited thing may take before the test fails (not a timing assertion).
DEADLINE = 20.0

Event = dict[str, Any]
TomlValue = str | int | float | bool
Feed = Mapping[str, TomlValue]


def toml_value(value: TomlValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for the ASCII used in these tests
    return repr(value)


def config_text(feeds: list[Feed], **settings: TomlValue) -> str:
    lines = [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    for feed in feeds:
        lines += ["", "[[feeds]]", *(f"{k} = {toml_value(v)}" for k, v in feed.items())]
    return "\n".join(lines) + "\n"


def replace_file(path: Path, text: str) -> None:
    """Save like an editor does: write a temporary file, then rename it over the old one."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text)
    temporary.replace(path)  # os.replace: atomic, a new inode at the old path


def write_config(path: Path, feeds: list[Feed], **settings: TomlValue) -> Path:
    settings.setdefault("database", "rssd.sqlite3")
    replace_file(path, config_text(feeds, **settings))
    return path


def matches(event: Event, message: str, fields: Mapping[str, object]) -> bool:
    return event.get("message") == message and all(
        event.get(key) == value for key, value in fields.items()
    )


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
            async with asyncio.timeout(DEADLINE):
                while True:
                    self._grew.clear()
                    found = self.find(key, value, start)
                    if found is not None:
                        return found
                    await self._grew.wait()
        except TimeoutError:
            pytest.fail(
                f"no sd_notify {key}={value or '*'} after datagram {start} within {DEADLINE}s;"
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


class Daemon:
    """One ``python -m rssd run -c CONFIG`` process; its stdout parsed as JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Event] = []
        self.lines: list[str] = []
        self.stderr = b""
        self._grew = asyncio.Event()
        self._stdout_done = False
        self._readers = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    @classmethod
    async def start(
        cls, config: Path, *, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> Daemon:
        environment = {
            key: value
            for key, value in os.environ.items()
            if key not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "RSSD_CONFIG")
        }
        environment.update(env or {})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rssd", "run", "-c", str(config), *args,
            cwd=config.parent,
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Its own process group, like a systemd unit's cgroup: the parse pool's
            # forkserver and workers are in it, so teardown can kill every one of them.
            start_new_session=True,
        )  # fmt: skip
        return cls(proc)

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        try:
            async for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append(line)
                try:
                    event = json.loads(line)
                except ValueError:
                    event = {"message": "<not json>", "line": line}
                self.events.append(event if isinstance(event, dict) else {"line": line})
                self._grew.set()
        finally:
            self._stdout_done = True
            self._grew.set()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = await self.proc.stderr.read()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return (
            f"--- rssd stdout ({len(self.lines)} lines) ---\n"
            + "\n".join(self.lines)
            + f"\n--- rssd stderr ---\n{self.stderr.decode(errors='replace')}"
        )

    def find(self, message: str, start: int = 0, **fields: object) -> int | None:
        for index in range(start, len(self.events)):
            if matches(self.events[index], message, fields):
                return index
        return None

    def all(self, message: str, **fields: object) -> list[Event]:
        return [event for event in self.events if matches(event, message, fields)]

    async def wait_for(
        self, message: str, *, start: int = 0, deadline: float = DEADLINE, **fields: object
    ) -> int:
        """Index of the first ``message`` event (with ``fields``) from ``start`` on."""
        try:
            async with asyncio.timeout(deadline):
                while True:
                    self._grew.clear()
                    found = self.find(message, start, **fields)
                    if found is not None:
                        return found
                    if self._stdout_done:
                        break
                    await self._grew.wait()
        except TimeoutError:
            pytest.fail(f"no {message} {fields} within {deadline}s\n{self.log()}")
        with contextlib.suppress(TimeoutError):  # stdout closed: the exit status follows
            async with asyncio.timeout(5):
                while self.proc.returncode is None:  # noqa: ASYNC110 - child watcher sets it
                    await asyncio.sleep(0.05)
        pytest.fail(
            f"rssd exited ({self.proc.returncode}) without logging {message} {fields}\n{self.log()}"
        )

    async def wait_exit(self) -> int:
        """Wait for the process to end and for its output to be read to the end."""
        try:
            async with asyncio.timeout(DEADLINE):
                code = await self.proc.wait()
                await asyncio.gather(*self._readers)
        except TimeoutError:
            pytest.fail(f"rssd did not exit within {DEADLINE}s\n{self.log()}")
        return code

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return await self.wait_exit()

    def group(self) -> list[str]:
        """The live processes of the daemon's process group: pid and command line each."""
        members = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            state, pgrp = fields[0], int(fields[2])
            if pgrp == self.pid and state != "Z":
                members.append(f"{entry.name}: {cmdline.strip()}")
        return members

    async def group_gone(self, deadline: float = DEADLINE) -> list[str]:
        """Wait until nothing of the process group runs; what is left after ``deadline``.

        Polled: after a clean stop the pool's processes may still be exiting for a moment
        (fds closed, not yet a zombie), so a single look could see them.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline):
                while self.group():  # noqa: ASYNC110 - other processes' state, no Event
                    await asyncio.sleep(0.05)
        return self.group()

    async def crash(self) -> None:
        """kill -9 the daemon's own process (not its group); wait until it is dead.

        ``proc.wait()`` is not used: on Python 3.11 it also waits for the output pipes to
        close, and they stay open while any child of the daemon is alive.
        """
        self.proc.send_signal(signal.SIGKILL)
        try:
            async with asyncio.timeout(DEADLINE):
                while self.proc.returncode is None:  # noqa: ASYNC110 - set by the child watcher
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pytest.fail(f"rssd survived SIGKILL for {DEADLINE}s")

    async def kill(self) -> None:
        """Teardown: SIGKILL the whole process group, then reap and stop reading."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DEADLINE):
                await self.proc.wait()
        # Read to EOF: only then does asyncio close the subprocess transport (after a
        # crash(), wait() returns at once while the left-over children still hold the pipes).
        await asyncio.wait(self._readers, timeout=DEADLINE)
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


class Daemons:
    """Starts daemons for one test; every one still alive is killed at teardown."""

    def __init__(self) -> None:
        self.started: list[Daemon] = []

    async def start(
        self, config: Path, *, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> Daemon:
        daemon = await Daemon.start(config, env=env, args=args)
        self.started.append(daemon)
        return daemon

    async def close(self) -> None:
        for daemon in self.started:
            await daemon.kill()


@asynccontextmanager
async def notify_socket(address: str) -> AsyncIterator[NotifyListener]:
    listener = NotifyListener(address)
    try:
        yield listener
    finally:
        await listener.close()


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
