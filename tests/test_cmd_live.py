"""The operator commands beside a real daemon (``python -m rssd run``) that is writing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from rssd.models.config import load_config
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer
from tests.support.commands import Result, cli, dated_rss
from tests.support.config import write_config
from tests.support.jobs import ongoing_job
from tests.support.process import WAIT, Daemons, run_rssd


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds; fail (not hang) after WAIT seconds (a hang guard)."""
    try:
        async with asyncio.timeout(WAIT):
            while not await check():  # noqa: ASYNC110 - another process's state, no Event
                await asyncio.sleep(0.2)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def status_of(config: Path) -> dict[str, Any]:
    result = await cli("status", "-c", config, "--json")
    assert result.code == 0, result.err
    document: dict[str, Any] = result.json()
    return {source["url"]: source for source in document["sources"]}


async def left_behind_by_a_crash(config: Path) -> None:
    """Every feed synced and its job left ONGOING, as a kill -9 leaves them: the restarted
    daemon recovers them as ``interrupted`` and fetches every feed at once."""
    db = await open_database(config.parent / "rssd.sqlite3")
    try:
        await SourceRepo(db).sync(load_config(config))
        for source in await SourceRepo(db).list():
            await ongoing_job(db, source.id)
    finally:
        await db.close()


@pytest.mark.slow
async def test_status_posts_fetch_and_import_while_the_daemon_writes(
    feed_server: FeedServer, tmp_path: Path, daemons: Daemons
) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text=dated_rss(["slow one"], name="slow"))

    busy = [
        feed_server.static(
            f"/busy{i}", dated_rss([f"post {i}.{n}" for n in range(50)], name=f"b{i}")
        )
        for i in range(8)
    ]
    slow_url = feed_server.route("/slow", slow)
    config = write_config(tmp_path / "config.toml", [{"url": url} for url in [*busy, slow_url]])
    await left_behind_by_a_crash(config)
    readings: list[Result] = []

    daemon = await daemons.start(config)

    # Read, again and again, while the daemon recovers, fetches and writes 400 posts.
    async def reading_while_it_writes() -> bool:
        readings.append(await cli("status", "-c", config, "--json"))
        readings.append(await cli("posts", "-c", config, "--json", "--limit", "0"))
        states = await status_of(config)
        return states[slow_url]["fetching"] and all(states[url]["state"] == "ok" for url in busy)

    await until(reading_while_it_writes, "the daemon to fetch every feed but /slow")
    assert arrived.is_set()
    for reading in readings:
        assert reading.code == 0, reading.err

    # The daemon is fetching /slow right now: a second fetch is refused, not duplicated.
    refused = await run_rssd("fetch", "-c", config, slow_url)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "refused" in refused.stdout

    # Another feed can be fetched by hand beside it; the daemon keeps its lock.
    fetched = await run_rssd("fetch", "-c", config, busy[0])
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    lock = (tmp_path / "rssd.sqlite3.lock").read_text().strip()
    assert lock == f"running {daemon.pid}"

    # Every feed at once, beside the daemon: `run --once` is refused by its lock, while
    # `fetch --all` fetches every feed but the one the daemon is fetching right now.
    once = await run_rssd("run", "--once", "-c", config)
    assert once.returncode == 1, once.stdout + once.stderr
    assert "daemon.locked" in once.stdout, once.stdout + once.stderr
    everything = await run_rssd("fetch", "-c", config, "--all")
    assert everything.returncode == 3, everything.stdout + everything.stderr  # none failed
    lines = everything.stdout.splitlines()
    assert len(lines) == len(busy) + 1, lines
    assert [line for line in lines if "refused" in line] == [
        line for line in lines if line.startswith(slow_url)
    ]

    # A feed added by import-opml is picked up by the running daemon by itself.
    added = feed_server.static("/added", dated_rss(["added one"], name="added"))
    opml_file = tmp_path / "more.opml"
    opml_file.write_text(f'<opml version="2.0"><body><outline xmlUrl="{added}"/></body></opml>')
    imported = await cli("import-opml", "-c", config, opml_file)
    assert imported.code == 0, imported.err

    async def picked_up() -> bool:
        return added in await status_of(config)

    await until(picked_up, "the daemon to add the imported feed")

    release.set()

    async def slow_fetched() -> bool:
        state: str = (await status_of(config))[slow_url]["state"]
        return state == "ok"

    await until(slow_fetched, "/slow to be fetched")
    posts = await cli("posts", "-c", config, "--json", "--limit", "0")
    assert posts.code == 0
    assert len(posts.json_lines()) >= 8 * 50 + 1

    assert await daemon.stop() == 0, daemon.log()
    assert daemon.find("jobs.recovered") is not None, daemon.log()
