"""The one way the suite runs rssd (or a helper script) as a real process.

- ``run_rssd(*args)``: ``python -m rssd ARGS`` to its end; stdout, stderr, exit status and
  peak RSS (wait4), without blocking the test's loop (which may be serving the feeds).
- ``Daemon`` / ``Daemons``: a process the test talks to while it runs: its stdout read
  line by line as JSON events, signals, kill -9, stdin, its process group.

Every wait has a generous deadline that only guards against a hang and fails with the
captured output; no test asserts on how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: How long a whole ``run_rssd`` may take before it is killed (a hang guard).
RUN_DEADLINE = 240.0
#: How long any single awaited thing of a ``Daemon`` may take (a hang guard). Generous: a
#: daemon's start-up on a loaded 2-core machine takes seconds, not tens of them.
WAIT = 120.0

Event = dict[str, Any]

#: Variables of the test's own environment that must not reach rssd unless a test sets them.
_SCRUBBED = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "RSSD_CONFIG")


def rssd_argv(*args: str | Path) -> list[str]:
    """``python -m rssd ARGS`` with this interpreter (the venv's rssd)."""
    return [sys.executable, "-m", "rssd", *map(str, args)]


def environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment minus what would change rssd's behaviour, plus ``env``."""
    base = {key: value for key, value in os.environ.items() if key not in _SCRUBBED}
    base.update(env or {})
    return base


def parse_events(lines: Sequence[str]) -> list[Event]:
    """JSON log lines -> events; a line that is not a JSON object fails the test."""
    events = []
    for line in lines:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}")
        assert isinstance(event, dict), line
        events.append(event)
    return events


def matches(event: Event, message: str, fields: Mapping[str, object]) -> bool:
    return event.get("message") == message and all(
        event.get(key) == value for key, value in fields.items()
    )


# -- to its end ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    """A process that ran to its end (or was killed at its deadline: ``timed_out``)."""

    returncode: int
    stdout: str
    stderr: str
    #: Peak resident set size of the command itself, from wait4 (bytes; peak_rss.py).
    max_rss: int
    timed_out: bool

    @property
    def events(self) -> list[Event]:
        """Every stdout line, parsed: each one must be a JSON object (rssd's log)."""
        return parse_events(self.stdout.splitlines())

    def named(self, message: str, **fields: object) -> list[Event]:
        return [event for event in self.events if matches(event, message, fields)]

    @property
    def summary(self) -> Event:
        (summary,) = self.named("run.summary")
        return summary

    def json(self) -> Any:
        """stdout as one JSON document (``status --json``)."""
        return json.loads(self.stdout)


#: Runs the command as its own child, to measure the command's own peak RSS (see there).
_PEAK_RSS = Path(__file__).with_name("peak_rss.py")


def _run_measured(
    argv: list[str], timeout: float, cwd: Path | None, env: dict[str, str]
) -> Finished:
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as scratch,
    ):
        peak = Path(scratch) / "peak_rss"
        proc = subprocess.Popen(
            [sys.executable, str(_PEAK_RSS), str(peak), *argv],
            stdout=out,
            stderr=err,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(ProcessLookupError):  # parse workers left behind, if any
            os.killpg(proc.pid, signal.SIGKILL)
        out.seek(0)
        err.seek(0)
        return Finished(
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            # The command's own, reported by peak_rss.py (killed: its parent's, at most).
            max_rss=int(peak.read_text() if peak.exists() else usage.ru_maxrss) * 1024,
            timed_out=expired.is_set(),
        )


async def run_rssd(
    *args: str | Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    argv: Sequence[str] | None = None,
    timeout: float = RUN_DEADLINE,
) -> Finished:
    """``python -m rssd ARGS`` (or ``argv``) to its end, killed with its process group after
    ``timeout``; run from a thread so the test's loop keeps serving the feeds."""
    command = list(argv) if argv is not None else rssd_argv(*args)
    return await asyncio.to_thread(_run_measured, command, timeout, cwd, environment(env))


# -- while it runs ------------------------------------------------------------------------


class Daemon:
    """One process (``python -m rssd ...`` unless ``argv`` is given), in its own process
    group like a systemd unit's cgroup; its stdout parsed as JSON lines as they come."""

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
    async def spawn(
        cls,
        *args: str | Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        argv: Sequence[str] | None = None,
        stdin: bool = False,
    ) -> Daemon:
        command = list(argv) if argv is not None else rssd_argv(*args)
        proc = await asyncio.create_subprocess_exec(
            *command,
            cwd=cwd,
            env=environment(env),
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Its own process group: the parse pool's forkserver and workers are in it, so
            # teardown can kill every one of them.
            start_new_session=True,
        )
        return cls(proc)

    @classmethod
    async def start(
        cls, config: Path, *, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> Daemon:
        """``rssd run -c CONFIG ARGS`` from the config's folder: the service."""
        return await cls.spawn("run", "-c", config, *args, cwd=config.parent, env=env)

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
            f"--- stdout ({len(self.lines)} lines) ---\n"
            + "\n".join(self.lines)
            + f"\n--- stderr ---\n{self.stderr.decode(errors='replace')}"
        )

    def find(self, message: str, start: int = 0, **fields: object) -> int | None:
        for index in range(start, len(self.events)):
            if matches(self.events[index], message, fields):
                return index
        return None

    def all(self, message: str, **fields: object) -> list[Event]:
        return [event for event in self.events if matches(event, message, fields)]

    async def wait_for(
        self, message: str, *, start: int = 0, deadline: float = WAIT, **fields: object
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
            async with asyncio.timeout(WAIT):
                while self.proc.returncode is None:  # noqa: ASYNC110 - child watcher sets it
                    await asyncio.sleep(0.05)
        pytest.fail(
            f"process exited ({self.proc.returncode}) without logging {message} {fields}\n"
            f"{self.log()}"
        )

    def send(self, text: str) -> None:
        """Write to its stdin (spawned with ``stdin=True``)."""
        assert self.proc.stdin is not None, "spawn(..., stdin=True)"
        self.proc.stdin.write(text.encode())

    async def wait_exit(self) -> int:
        """Wait for the process to end and for its output to be read to the end."""
        try:
            async with asyncio.timeout(WAIT):
                code = await self.proc.wait()
                await asyncio.gather(*self._readers)
        except TimeoutError:
            pytest.fail(f"process did not exit within {WAIT}s\n{self.log()}")
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

    async def group_gone(self, deadline: float = WAIT) -> list[str]:
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
        """kill -9 the process itself (not its group), as the OOM killer would; wait until
        it is dead.

        ``proc.wait()`` is not used: on Python 3.11 it also waits for the output pipes to
        close, and they stay open while any child of the daemon is alive.
        """
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)
        await self.exited()

    async def exited(self) -> int:
        """Wait for the process itself to end (not for its output: children it leaves
        behind may hold the pipes open); its exit status."""
        try:
            async with asyncio.timeout(WAIT):
                while self.proc.returncode is None:  # noqa: ASYNC110 - set by the child watcher
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pytest.fail(f"process still running after {WAIT}s\n{self.log()}")
        return self.proc.returncode

    async def kill(self) -> None:
        """SIGKILL the whole process group, then reap and read to the end."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WAIT):
                await self.proc.wait()
        # Read to EOF: only then does asyncio close the subprocess transport (after a
        # crash(), wait() returns at once while the left-over children still hold the pipes).
        await asyncio.wait(self._readers, timeout=WAIT)
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


class Daemons:
    """Processes started for one test; every one is killed (with its group) at teardown."""

    def __init__(self) -> None:
        self.started: list[Daemon] = []

    async def start(
        self, config: Path, *, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> Daemon:
        """``rssd run -c CONFIG``: see Daemon.start."""
        daemon = await Daemon.start(config, env=env, args=args)
        self.started.append(daemon)
        return daemon

    async def spawn(
        self,
        *args: str | Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        argv: Sequence[str] | None = None,
        stdin: bool = False,
    ) -> Daemon:
        """Any process: see Daemon.spawn."""
        daemon = await Daemon.spawn(*args, cwd=cwd, env=env, argv=argv, stdin=stdin)
        self.started.append(daemon)
        return daemon

    async def close(self) -> None:
        for daemon in self.started:
            await daemon.kill()
