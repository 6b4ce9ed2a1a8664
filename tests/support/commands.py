"""The operator commands in-process (tests/test_cmd_*.py): run the real CLI, fill a real
database with a real ``rssd run --once``. As a subprocess: tests.support.process."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from rssd.cli import main
from rssd.daemon.once import RunSummary, run_once
from rssd.models.config import load_config
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer
from tests.support.config import write_config


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


def _call(args: Sequence[str]) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())


async def cli(*args: str | Path) -> Result:
    """``rssd ARGS`` in-process, in a thread: its asyncio.run cannot nest in the test's loop,
    and the test's loop keeps serving the loopback feeds meanwhile."""
    return await asyncio.to_thread(_call, [str(arg) for arg in args])


def cli_sync(*args: str | Path) -> Result:
    return _call([str(arg) for arg in args])


async def run_once_from(config_path: Path) -> RunSummary:
    """A real ``rssd run --once`` (in-process): lock, recovery, sync, fetch every feed."""
    return await run_once(load_config(config_path))


def dated_rss(titles: Sequence[str], *, hours_apart: float = 1.0, name: str = "feed") -> str:
    """RSS whose items are 1h, 2h, ... old (newest first), each with a link and guid."""
    now = datetime.now(UTC)
    items = []
    for index, title in enumerate(titles):
        when = format_datetime(now - timedelta(hours=hours_apart * (index + 1)), usegmt=True)
        items.append(
            f"<item><title>{title}</title><link>http://example.org/{name}/{index}</link>"
            f"<guid>{name}-{index}</guid><pubDate>{when}</pubDate></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{name}</title><link>http://example.org/</link><description>d</description>"
        + "".join(items)
        + "</channel></rss>"
    )


@dataclass(frozen=True)
class World:
    """A config and a database filled by a real run: one source in every state."""

    config: Path
    database: Path | str  # a SQLite file, or a PostgreSQL URL
    urls: dict[str, str]  # ok, news, failing, gone, disabled, new


async def populated(
    server: FeedServer, tmp_path: Path, database: Path | str | None = None
) -> World:
    """ok (3 posts, no name), news (2 posts, named), failing (500), gone (410), disabled
    (in the config, never fetched), new (added to the config after the run)."""
    urls = {
        "ok": server.static("/ok", dated_rss(["ok one", "ok two", "ok three"], name="ok")),
        "news": server.static(
            "/news", dated_rss(["news one", "news two"], hours_apart=5, name="news")
        ),
        "failing": server.static("/failing", "boom", status=500, content_type="text/plain"),
        "gone": server.static("/gone", "bye", status=410, content_type="text/plain"),
        "disabled": server.static("/disabled", dated_rss(["never"], name="disabled")),
        "new": server.static("/new", dated_rss(["later"], name="new")),
    }
    feeds: list[dict[str, object]] = [
        {"url": urls["ok"]},
        {"url": urls["news"], "name": "Daily News"},
        {"url": urls["failing"], "name": "Broken"},
        {"url": urls["gone"], "name": "Gone away"},
        {"url": urls["disabled"], "name": "Switched off", "enabled": False},
    ]
    target = database if database is not None else tmp_path / "rssd.sqlite3"
    config = write_config(tmp_path / "config.toml", feeds, database=str(target))
    await run_once_from(config)
    # "new" joins the config afterwards and is synced (as a daemon reload does), not fetched.
    write_config(config, [*feeds, {"url": urls["new"], "name": "Brand new"}], database=str(target))
    db = await open_database(target)
    try:
        await SourceRepo(db).sync(load_config(config))
    finally:
        await db.close()
    return World(config, target, urls)
