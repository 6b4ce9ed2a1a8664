"""The daemon's event loop: uvloop when installed, asyncio's when asked or absent.

Every test that starts ``rssd run`` as a subprocess runs the daemon on the loop chosen here.
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from rssd.daemon import loop


async def which() -> str:
    """The module of the running loop's class."""
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_is_the_default_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RSSD_EVENT_LOOP", raising=False)
    assert loop.loop_name() == "uvloop"
    assert loop.run(which()).startswith("uvloop")


def test_asyncio_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSSD_EVENT_LOOP", "asyncio")
    assert loop.loop_factory() is None
    assert loop.loop_name() == "asyncio"
    assert loop.run(which()).startswith("asyncio")


def test_asyncio_loop_when_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RSSD_EVENT_LOOP", raising=False)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    assert loop.loop_factory() is None
