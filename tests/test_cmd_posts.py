"""``rssd posts`` against a database filled by a real ``rssd run --once``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rssd.commands.args import parse_since
from tests.conftest import FeedServer
from tests.support.commands import cli, populated

pytestmark = pytest.mark.both_backends

# populated(): "ok" has posts 1h, 2h, 3h old; "news" (named "Daily News") 5h and 10h old.
NEWEST_FIRST = ["ok one", "ok two", "ok three", "news one", "news two"]


async def test_json_lines_newest_first_with_every_field(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    world = await populated(feed_server, tmp_path, db_target)
    result = await cli("posts", "-c", world.config, "--json")
    assert result.code == 0, result.err
    posts = result.json_lines()
    assert [p["title"] for p in posts] == NEWEST_FIRST
    first = posts[0]
    assert set(first) == {
        "id", "source_id", "source_name", "source_url", "external_id", "title", "url",
        "author", "summary", "content", "published_at", "updated_at", "created_at",
    }  # fmt: skip
    assert first["source_url"] == world.urls["ok"]
    assert first["url"] == "http://example.org/ok/0"
    assert first["published_at"].endswith("Z")
    assert posts[3]["source_name"] == "Daily News"


async def test_filters(feed_server: FeedServer, tmp_path: Path, db_target: Path | str) -> None:
    world = await populated(feed_server, tmp_path, db_target)

    async def titles(*args: str) -> list[str]:
        result = await cli("posts", "-c", world.config, "--json", *args)
        assert result.code == 0, result.err
        return [p["title"] for p in result.json_lines()]

    assert await titles("--limit", "2") == NEWEST_FIRST[:2]
    assert await titles("--limit", "0") == NEWEST_FIRST  # 0: no limit
    assert await titles("--source", world.urls["news"]) == ["news one", "news two"]
    assert await titles("--source", "2") == ["news one", "news two"]  # ids as in `status`
    assert await titles("--since", "150m") == ["ok one", "ok two"]
    assert await titles("--since", "4h", "--source", world.urls["news"]) == []
    two_days_ahead = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    assert await titles("--since", two_days_ahead) == []
    assert await titles("--since", "2000-01-01") == NEWEST_FIRST


async def test_human_output_shows_time_source_title_and_link(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    world = await populated(feed_server, tmp_path, db_target)
    result = await cli("posts", "-c", world.config, "--limit", "4")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["TIME", "SOURCE", "TITLE"]
    title_column = lines[0].index("TITLE")
    assert lines[1].endswith("ok one")
    assert lines[1].startswith("1h ago")
    assert lines[1].split()[2] == "ok"  # an unnamed feed shows its own <title>
    assert lines[2] == " " * title_column + "http://example.org/ok/0"
    assert "Daily News" in lines[7]
    assert lines[7][title_column:] == "news one"


async def test_unknown_source_and_bad_since_are_usage_errors(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    world = await populated(feed_server, tmp_path, db_target)
    unknown = await cli("posts", "-c", world.config, "--source", "http://nowhere.example/feed")
    assert unknown.code == 2
    assert "no feed with URL" in unknown.err
    bad = await cli("posts", "-c", world.config, "--since", "yesterday")
    assert bad.code == 2
    assert "expected a span like 2h" in bad.err


async def test_no_posts(feed_server: FeedServer, tmp_path: Path, db_target: Path | str) -> None:
    world = await populated(feed_server, tmp_path, db_target)
    result = await cli("posts", "-c", world.config, "--source", world.urls["failing"])
    assert (result.code, result.out) == (0, "no posts match\n")
    as_json = await cli("posts", "-c", world.config, "--source", world.urls["failing"], "--json")
    assert (as_json.code, as_json.out) == (0, "")


NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("30m", NOW - timedelta(minutes=30)),
        ("7d", NOW - timedelta(days=7)),
        ("1w", NOW - timedelta(weeks=1)),
        ("45s", NOW - timedelta(seconds=45)),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T08:30", datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),
        ("2026-11-01T08:30:00+01:00", datetime(2026, 11, 1, 7, 30, tzinfo=UTC)),
        ("2026-11-01T08:30:00Z", datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, NOW) == expected
