"""The commands people reached for (issue #16, item 5): feeds by name, ``fetch --all``,
``posts --new`` and ``--stored-since``, a removed feed named to ``fetch``, ``status`` beside
a broken config.toml, and check-config listing every error at once. Real CLI, real
loopback feeds, real databases."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from rssd.commands.new_mark import NewMark
from rssd.commands.posts import query
from rssd.models.config import load_config
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer
from tests.support.commands import World, cli, cli_sync, dated_rss, populated
from tests.support.config import write_config


@pytest.fixture
async def world(feed_server: FeedServer, tmp_path: Path) -> World:
    return await populated(feed_server, tmp_path)


@pytest.fixture(autouse=True)
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``posts --new`` keeps its mark under $XDG_STATE_HOME: a folder of this test's own."""
    home = tmp_path / "state-home"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


def rows(database: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(database)) as conn:
        return list(conn.execute(sql).fetchall())


# --- feeds by name ------------------------------------------------------------------------


async def test_posts_and_fetch_take_a_feed_by_name(world: World) -> None:
    by_name = await cli("posts", "-c", world.config, "--source", "daily news", "--json")
    assert by_name.code == 0, by_name.err
    assert {post["source_name"] for post in by_name.json_lines()} == {"Daily News"}
    assert len(by_name.json_lines()) == 2
    fetched = await cli("fetch", "-c", world.config, "Daily News")
    assert fetched.code == 0, fetched.err
    assert world.urls["news"] in fetched.out


async def test_an_unknown_or_pending_name_is_a_usage_error(world: World) -> None:
    unknown = await cli("posts", "-c", world.config, "--source", "No Such Feed")
    assert unknown.code == 2
    assert "no feed with id, URL or name 'No Such Feed'" in unknown.err
    # "Brand new" is in config.toml and synced; a name only in the file gets a hint.
    write_config(
        world.config, [{"url": world.urls["ok"]}, {"url": "http://127.0.0.1:9/x", "name": "Later"}]
    )
    pending = await cli("posts", "-c", world.config, "--source", "Later")
    assert pending.code == 2
    assert "in config.toml but not in the database yet" in pending.err


# --- fetch --all and a removed feed ----------------------------------------------------------


async def test_fetch_all_fetches_every_enabled_feed(world: World, feed_server: FeedServer) -> None:
    before = dict(feed_server.hits)
    result = await cli("fetch", "-c", world.config, "--all")
    assert result.code == 1, result.out  # "failing" and "gone" fail; that is the exit code
    enabled = ["ok", "news", "failing", "gone", "new"]
    for key in enabled:
        assert world.urls[key] in result.out
        path = "/" + key
        assert feed_server.hits.get(path, 0) == before.get(path, 0) + 1, key
    assert "/disabled" not in feed_server.hits
    assert len(result.out.splitlines()) == len(enabled)


def test_fetch_needs_feeds_or_all_not_both(world: World) -> None:
    neither = cli_sync("fetch", "-c", world.config)
    both = cli_sync("fetch", "-c", world.config, "--all", "1")
    for result in (neither, both):
        assert result.code == 2
        assert "--all" in result.err


async def test_fetch_of_a_feed_removed_from_the_config_says_so(
    world: World, feed_server: FeedServer
) -> None:
    write_config(world.config, [{"url": world.urls["ok"]}])
    db = await open_database(world.database)
    try:
        await SourceRepo(db).sync(load_config(world.config))  # as the daemon's reload does
    finally:
        await db.close()
    hits = feed_server.hits.get("/news", 0)
    result = await cli("fetch", "-c", world.config, world.urls["news"])
    assert result.code == 2
    assert "was removed from config.toml" in result.err
    assert feed_server.hits.get("/news", 0) == hits


# --- posts --new and --stored-since -----------------------------------------------------------


async def test_posts_new_shows_what_was_stored_since_the_last_call(
    world: World, feed_server: FeedServer, state_home: Path
) -> None:
    first = await cli("posts", "-c", world.config, "--new", "--json")
    assert first.code == 0, first.err
    assert len(first.json_lines()) == 5  # every post the first time, no default limit
    again = await cli("posts", "-c", world.config, "--new", "--json")
    assert again.json_lines() == []
    # "new" has an item published a day ago: --since 1h would not show it; --new does.
    feed_server.static("/new", dated_rss(["later"], hours_apart=24, name="new"))
    assert (await cli("fetch", "-c", world.config, world.urls["new"])).code == 0
    since = await cli("posts", "-c", world.config, "--since", "1h", "--json")
    assert [p["title"] for p in since.json_lines()] == []
    new = await cli("posts", "-c", world.config, "--new", "--json")
    assert [p["title"] for p in new.json_lines()] == ["later"]
    assert (state_home / "rssd" / "posts-new.json").exists()
    assert (await cli("posts", "-c", world.config, "--new", "--json")).json_lines() == []


async def test_the_new_mark_is_kept_per_database(world: World, tmp_path: Path) -> None:
    mark_file = tmp_path / "marks.json"
    shown = await query(world.config, feed=None, since=None, new=True, mark_file=mark_file)
    assert len(shown) == 5
    other = NewMark(tmp_path / "other.sqlite3", mark_file)
    assert other.read() == 0
    assert NewMark(world.database, mark_file).read() == max(post.id for post in shown)
    marks = json.loads(mark_file.read_text())
    assert isinstance(world.database, Path)
    assert set(marks) == {str(world.database.resolve())}


async def test_posts_stored_since_filters_by_storing_time(world: World) -> None:
    everything = await cli("posts", "-c", world.config, "--stored-since", "1h", "--json")
    assert len(everything.json_lines()) == 5  # stored a moment ago, published hours ago
    published = await cli("posts", "-c", world.config, "--since", "1h", "--json")
    assert published.json_lines() == []
    future = await cli("posts", "-c", world.config, "--stored-since", "2099-01-01", "--json")
    assert future.json_lines() == []


# --- status beside a broken config ------------------------------------------------------------


async def test_status_with_a_broken_config_shows_the_error_then_the_database(
    world: World,
) -> None:
    text = world.config.read_text()
    world.config.write_text(text + "\nmax_concurency = 3\n")
    result = await cli("status", "-c", world.config)
    assert result.code == 1
    assert "max_concurency: unknown key" in result.err
    first = result.out.splitlines()[0]
    assert "config.toml does not validate" in first
    assert world.urls["news"] in result.out  # the database's view is there
    as_json = await cli("status", "-c", world.config, "--json")
    assert as_json.code == 1
    document = as_json.json()
    assert any("max_concurency" in line for line in document["config_errors"])
    assert len(document["sources"]) == 6


async def test_status_with_unparsable_toml_still_finds_the_default_database(
    world: World,
) -> None:
    world.config.write_text("[[feeds]\nurl = \n")  # the database is the default name
    result = await cli("status", "-c", world.config)
    assert result.code == 1
    assert "TOML syntax error" in result.err
    assert world.urls["ok"] in result.out


async def test_status_with_a_broken_config_naming_postgresql_never_shows_its_password(
    tmp_path: Path,
) -> None:
    """The URL is the database (not a file named after it), and its password stays out of
    every line: port 1 refuses at once, so the error quotes the URL."""
    config = tmp_path / "config.toml"
    config.write_text(
        'database = "postgresql://rssd:s3cret@127.0.0.1:1/rssd"\nmax_concurency = 3\n'
    )
    result = await cli("status", "-c", config)
    assert result.code == 1
    assert "max_concurency: unknown key" in result.err
    assert "postgresql://rssd:***@127.0.0.1:1/rssd" in result.err
    assert "s3cret" not in result.out + result.err
    assert "no database at" not in result.err


# --- check-config lists every error at once ---------------------------------------------------


def test_check_config_lists_duplicates_with_type_errors(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'max_concurrency = "many"\n'
        '[[feeds]]\nurl = "https://a.example/feed"\ninterval_minutes = -3\n'
        '[[feeds]]\nurl = "https://A.example/feed"\n'
        '[[feeds]]\nurl = "https://b.example/feed"\n'
        '[[feeds]]\nurl = "https://b.example/feed"\n'
    )
    result = cli_sync("check-config", "-c", config)
    assert result.code == 1
    lines = result.err.splitlines()
    assert len(lines) == 4, lines
    assert "max_concurrency" in lines[0]
    assert "feeds[0].interval_minutes" in lines[1]
    assert "feeds[1]: duplicate url 'https://A.example/feed' (already feeds[0])" in lines[2]
    assert "feeds[3]: duplicate url 'https://b.example/feed' (already feeds[2])" in lines[3]
