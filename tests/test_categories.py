"""Categories and the feed's own title in the operator's view (issue #10, items 3 and 7):
config -> content_sources -> status, posts, export-opml; over a real run and database."""

from __future__ import annotations

from pathlib import Path

import pytest

from rssd.models.config import ConfigError, in_category, load_config, normalize_category
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer
from tests.support.commands import cli, dated_rss, run_once_from
from tests.support.config import write_config


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Blogs", "Blogs"),
        ("Blogs/Linux", "Blogs / Linux"),
        ("  Blogs /  Free  Software ", "Blogs / Free Software"),
    ],
)
def test_normalize_category(raw: str, expected: str) -> None:
    assert normalize_category(raw) == expected


@pytest.mark.parametrize(
    ("category", "wanted", "expected"),
    [
        ("Blogs / Linux", "Blogs", True),
        ("Blogs / Linux", "blogs/linux", True),
        ("Blogs", "Blogs / Linux", False),
        ("Blogsphere", "Blogs", False),
        (None, "Blogs", False),
    ],
)
def test_in_category(category: str | None, wanted: str, expected: bool) -> None:
    assert in_category(category, wanted) is expected


def test_an_empty_folder_is_a_config_error(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.toml", [{"url": "https://a.example/f", "category": "Blogs //x"}]
    )
    with pytest.raises(ConfigError, match=r"feeds\[0\]\.category: .*every folder"):
        load_config(config)


async def test_status_posts_and_export_show_categories_and_feed_titles(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    linux = feed_server.static("/linux", dated_rss(["kernel"], name="Linux Weekly"))
    garden = feed_server.static("/garden", dated_rss(["roses"], name="Garden Notes"))
    plain = feed_server.static("/plain", dated_rss(["misc"], name="Plain Feed"))
    config = write_config(
        tmp_path / "config.toml",
        [
            {"url": linux, "category": "Blogs / Linux"},
            {"url": garden, "name": "My garden", "category": "Gardening"},
            {"url": plain},
        ],
    )
    await run_once_from(config)

    status = await cli("status", "-c", config)
    header, *rows = status.out.splitlines()[:4]
    assert header.split()[:3] == ["ID", "NAME", "CATEGORY"]
    cells = [[c.strip() for c in row.split("  ") if c.strip()][1:3] for row in rows]
    assert cells == [
        ["Linux Weekly", "Blogs / Linux"],
        ["My garden", "Gardening"],
        ["Plain Feed", "-"],
    ]

    only = await cli("status", "-c", config, "--category", "blogs")
    assert [
        line.split()[0] for line in only.out.splitlines()[1:] if line[:3].strip().isdigit()
    ] == ["1"]
    none = await cli("status", "-c", config, "--category", "Cooking")
    assert none.out.splitlines()[0] == "no feed in category 'Cooking'"

    document = (await cli("status", "--json", "-c", config)).json()
    assert [(s["name"], s["feed_title"], s["category"]) for s in document["sources"]] == [
        (None, "Linux Weekly", "Blogs / Linux"),
        ("My garden", "Garden Notes", "Gardening"),
        (None, "Plain Feed", None),
    ]

    posts = (await cli("posts", "--json", "-c", config, "--category", "Blogs")).json_lines()
    assert [(p["title"], p["source_name"]) for p in posts] == [("kernel", "Linux Weekly")]
    garden_posts = await cli("posts", "-c", config, "--category", "gardening")
    assert "roses" in garden_posts.out and "kernel" not in garden_posts.out
    bad = await cli("posts", "-c", config, "--category", "a//b")
    assert bad.code == 2

    exported = (await cli("export-opml", "-c", config)).out
    assert (
        f'<outline type="rss" text="Linux Weekly" title="Linux Weekly" xmlUrl="{linux}" />'
        in exported
    )
    assert f'text="My garden" title="My garden" xmlUrl="{garden}"' in exported


async def test_a_changed_category_is_synced(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", [{"url": "https://a.example/f", "category": "A"}])
    db = await open_database(tmp_path / "rssd.sqlite3")
    try:
        repo = SourceRepo(db)
        await repo.sync(load_config(config))
        write_config(config, [{"url": "https://a.example/f", "category": "B/C"}])
        report = await repo.sync(load_config(config))
        assert report.updated == ("https://a.example/f",)
        (source,) = await repo.list()
        assert source.category == "B / C"
        assert await repo.set_feed_title(source.id, "T") is True
        assert await repo.set_feed_title(source.id, "T") is False  # unchanged: no write
        (source,) = await repo.list()
        assert (source.feed_title, source.label) == ("T", "T")
    finally:
        await db.close()
