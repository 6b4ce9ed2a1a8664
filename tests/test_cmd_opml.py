"""``rssd import-opml`` / ``export-opml``: real-world exports, a round trip, a config.toml
whose every byte outside the added tables survives, and refusals that change nothing."""

from __future__ import annotations

import shutil
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rssd.commands import opml
from rssd.models.config import load_config, normalize_url
from tests.conftest import FeedServer, rss
from tests.support.commands import cli, cli_sync, run_once_from
from tests.support.config import write_config

FIXTURES = Path(__file__).parent / "fixtures" / "opml"
SHIPPED_CONFIG = Path(__file__).parent.parent / "config.toml"


def feeds_of(config: Path) -> list[tuple[str, str | None]]:
    return [(feed.url, feed.name) for feed in load_config(config).feeds]


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "feedly.opml",
            [
                ("https://feeds.arstechnica.com/arstechnica/index", "Ars Technica", ("Tech",)),
                ("https://lwn.net/headlines/rss", "LWN.net", ("Tech",)),
                ("https://github.blog/feed/", "The GitHub Blog", ("Tech",)),
                ("https://xkcd.com/atom.xml", "xkcd.com", ("Comics",)),
                (
                    "https://www.lemonde.fr/rss/une.xml",
                    "Le Monde - À la une",
                    ("News & Politics",),
                ),
            ],
        ),
        (
            "netnewswire.opml",
            [
                ("https://daringfireball.net/feeds/main", "Daring Fireball", ()),
                ("https://blog.python.org/feeds/posts/default", "Python Insider", ()),
                ("https://jvns.ca/atom.xml", "Julia Evans", ("Development",)),
                (
                    "https://simonwillison.net/atom/everything/",
                    "Simon Willison's Weblog",
                    ("Development",),
                ),
                ("https://www.swift.org/atom.xml", "Swift.org", ("Development", "Apple")),
            ],
        ),
        (
            # ISO-8859-1, text without title, feed://, &amp; in a query, xmlURL spelling,
            # a duplicate, a plain link outline and an ftp URL.
            "tinytinyrss.opml",
            [
                ("http://cafe.example.org/feed?format=rss&lang=fr", "Café crème", ("Blogs",)),
                ("http://www.debian.org/News/news", "Debian News", ("Blogs", "Linux")),
                ("https://planet.debian.org/rss20.xml", "Planet Debian", ("Blogs", "Linux")),
                ("https://LWN.net/headlines/rss", "LWN again", ()),
            ],
        ),
    ],
)
def test_real_world_exports(fixture: str, expected: list[tuple[str, str, tuple[str, ...]]]) -> None:
    found = opml.parse((FIXTURES / fixture).read_bytes())
    assert [(f.url, f.title, f.category) for f in found.feeds] == expected


def test_a_non_http_feed_is_reported_not_imported() -> None:
    found = opml.parse((FIXTURES / "tinytinyrss.opml").read_bytes())
    assert [r.url for r in found.rejected] == ["ftp://ftp.example.org/feed.xml"]


def test_round_trip_through_an_empty_config(tmp_path: Path) -> None:
    source = write_config(
        tmp_path / "source.toml",
        [
            {"url": "https://a.example/feed.xml", "name": 'A "quoted" <name> & more'},
            {"url": "https://b.example/rss?x=1&y=2"},
            {"url": "http://c.example/atom", "name": "Ünïcödé"},
        ],
    )
    exported = cli_sync("export-opml", "-c", source)
    assert exported.code == 0, exported.err
    assert exported.out.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0">')
    opml_file = tmp_path / "feeds.opml"
    opml_file.write_text(exported.out, encoding="utf-8")
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    imported = cli_sync("import-opml", "-c", empty, opml_file)
    assert imported.code == 0, imported.err
    assert feeds_of(empty) == feeds_of(source)


def test_import_keeps_every_existing_byte(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    shutil.copy(SHIPPED_CONFIG, config)
    before = config.read_bytes()
    shipped = {normalize_url(feed.url) for feed in load_config(SHIPPED_CONFIG).feeds}
    feedly = opml.parse((FIXTURES / "feedly.opml").read_bytes()).feeds
    new = [f for f in feedly if normalize_url(f.url) not in shipped]
    assert new and len(new) < len(feedly)  # some feeds are new, some already configured

    result = cli_sync("import-opml", "-c", config, FIXTURES / "feedly.opml")
    assert result.code == 0, result.err
    after = config.read_bytes()
    assert after.startswith(before)  # comments, blank lines, key order: all as they were
    appended = after[len(before) :].decode()
    assert appended.lstrip().startswith("# Added by `rssd import-opml feedly.opml` on ")
    assert tomllib.loads(appended) == {
        "feeds": [{"url": f.url, "name": f.title, "category": f.category_name} for f in new]
    }
    assert len(load_config(config).feeds) == len(shipped) + len(new)
    lines = result.out.splitlines()
    assert lines[0] == f"{config}: added {len(new)} feeds from {FIXTURES / 'feedly.opml'}"
    assert f"skipped {len(feedly) - len(new)} already in the config:" in lines

    again = cli_sync("import-opml", "-c", config, FIXTURES / "feedly.opml")
    assert again.code == 0
    assert "added 0 feeds" in again.out
    assert config.read_bytes() == after


def test_import_of_nested_outlines_into_a_config_without_a_final_newline(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(
        b'# mine\nlog_level = "debug"  # keep\n[[feeds]]\nurl = "https://x.example/f"'
    )
    before = config.read_bytes()
    result = cli_sync("import-opml", "-c", config, FIXTURES / "netnewswire.opml")
    assert result.code == 0, result.err
    assert config.read_bytes().startswith(before)
    assert [url for url, _ in feeds_of(config)] == [
        "https://x.example/f",
        "https://daringfireball.net/feeds/main",
        "https://blog.python.org/feeds/posts/default",
        "https://jvns.ca/atom.xml",
        "https://simonwillison.net/atom/everything/",
        "https://www.swift.org/atom.xml",
    ]
    assert "[Development / Apple]" in result.out


def test_import_into_an_inline_feeds_array(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('# top\nfeeds = [{url = "https://x.example/f"}]\n')
    result = cli_sync("import-opml", "-c", config, FIXTURES / "tinytinyrss.opml")
    assert result.code == 0, result.err
    assert config.read_text().startswith("# top\nfeeds = [")
    assert len(feeds_of(config)) == 5
    assert ("http://cafe.example.org/feed?format=rss&lang=fr", "Café crème") in feeds_of(config)


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", [])
    before = config.read_bytes()
    result = cli_sync("import-opml", "--dry-run", "-c", config, FIXTURES / "feedly.opml")
    assert result.code == 0
    assert "would add 5 feeds" in result.out
    assert config.read_bytes() == before


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<opml version="2.0"><body><outline text="&lol3;" xmlUrl="https://a.example/f"/></body></opml>
"""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<opml><body><outline xmlUrl='https://a.example/f'></body></opml>", "not well-formed"),
        (b"", "not well-formed"),
        (b"<html><body></body></html>", "not OPML: the root element is <html>"),
        (b"<opml version='2.0'><head/></opml>", "no <body>"),
        (BILLION_LAUGHS, "declares a DTD or entities"),
        (
            '<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE opml SYSTEM "file:///etc/passwd">'
            "<opml><body/></opml>".encode("utf-16"),
            "declares a DTD or entities",
        ),
        (b"<opml><body/></opml>\xff\xfe", "not valid utf-8"),
        (b'<?xml version="1.0" encoding="no-such-codec"?><opml/>', "unknown encoding"),
    ],
)
def test_a_malformed_opml_leaves_the_config_untouched(
    tmp_path: Path, content: bytes, message: str
) -> None:
    config = tmp_path / "config.toml"
    shutil.copy(SHIPPED_CONFIG, config)
    before = (config.read_bytes(), config.stat().st_mtime_ns)
    bad = tmp_path / "bad.opml"
    bad.write_bytes(content)
    result = cli_sync("import-opml", "-c", config, bad)
    assert result.code == 1
    assert message in result.err
    assert "config.toml not changed" in result.err
    assert (config.read_bytes(), config.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.opml", "config.toml"]  # no temp


def test_an_invalid_config_is_not_edited(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('max_concurrency = "many"\n')
    result = cli_sync("import-opml", "-c", config, FIXTURES / "feedly.opml")
    assert result.code == 1
    assert "max_concurrency" in result.err
    assert config.read_text() == 'max_concurrency = "many"\n'


def test_a_missing_opml_file(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", [])
    result = cli_sync("import-opml", "-c", config, tmp_path / "nope.opml")
    assert result.code == 1
    assert "cannot read" in result.err


def test_import_keeps_the_file_mode(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", [])
    config.chmod(0o640)
    assert cli_sync("import-opml", "-c", config, FIXTURES / "feedly.opml").code == 0
    assert config.stat().st_mode & 0o777 == 0o640


def test_round_trip_keeps_nested_folders_and_disabled_feeds(tmp_path: Path) -> None:
    """Categories become nested outlines and back; enabled = false survives (issue #10)."""
    source = write_config(
        tmp_path / "source.toml",
        [
            {"url": "https://top.example/feed"},
            {"url": "https://a.example/feed", "name": "A", "category": "Blogs / Linux"},
            {"url": "https://b.example/feed", "category": "Blogs", "enabled": False},
            {"url": "https://c.example/feed", "name": "C", "category": "Blogs/Linux "},
            {"url": "https://d.example/feed", "category": "News & Politics"},
        ],
    )
    exported = cli_sync("export-opml", "-c", source)
    assert exported.code == 0, exported.err
    body = exported.out.split("<body>")[1]
    assert [line.strip() for line in body.splitlines() if line.strip()][:5] == [
        '<outline type="rss" text="https://top.example/feed" title="https://top.example/feed" '
        'xmlUrl="https://top.example/feed" />',
        '<outline text="Blogs" title="Blogs">',
        '<outline text="Linux" title="Linux">',
        '<outline type="rss" text="A" title="A" xmlUrl="https://a.example/feed" />',
        '<outline type="rss" text="C" title="C" xmlUrl="https://c.example/feed" />',
    ]
    assert 'xmlUrl="https://b.example/feed" enabled="false" />' in body
    opml_file = tmp_path / "feeds.opml"
    opml_file.write_text(exported.out, encoding="utf-8")
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    imported = cli_sync("import-opml", "-c", empty, opml_file)
    assert imported.code == 0, imported.err
    (line,) = [line for line in imported.out.splitlines() if "b.example" in line]
    assert line.split() == ["+", "https://b.example/feed", "[Blogs]", "(disabled)"]

    def described(path: Path) -> list[tuple[str, str | None, str | None, bool]]:
        return [(f.url, f.name, f.category, f.enabled) for f in load_config(path).feeds]

    # Feeds of one folder come out together: the order may change, nothing else.
    assert sorted(described(empty)) == sorted(described(source))
    assert ("https://a.example/feed", "A", "Blogs / Linux", True) in described(empty)
    assert ("https://b.example/feed", None, "Blogs", False) in described(empty)


def test_import_keeps_folders_as_categories(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("")
    result = cli_sync("import-opml", "-c", config, FIXTURES / "tinytinyrss.opml")
    assert result.code == 0, result.err
    assert [(f.url, f.category) for f in load_config(config).feeds] == [
        ("http://cafe.example.org/feed?format=rss&lang=fr", "Blogs"),
        ("http://www.debian.org/News/news", "Blogs / Linux"),
        ("https://planet.debian.org/rss20.xml", "Blogs / Linux"),
        ("https://LWN.net/headlines/rss", None),
    ]


async def test_export_gives_a_homepage_as_its_feed_with_the_page_as_html_url(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    feed = feed_server.static("/blog/feed.xml", rss([{"title": "One", "guid": "1"}]))
    page = feed_server.static(
        "/blog/",
        '<html><head><link rel="alternate" type="application/rss+xml" href="feed.xml">'
        "</head></html>",
        content_type="text/html",
    )
    config = write_config(tmp_path / "config.toml", [{"url": page, "name": "Jane"}])
    await run_once_from(config)
    exported = await cli("export-opml", "-c", config)
    assert exported.code == 0, exported.err
    outline = ET.fromstring(exported.out).find(".//outline[@text='Jane']")
    assert outline is not None
    assert (outline.get("xmlUrl"), outline.get("htmlUrl"), outline.get("type")) == (
        feed,
        page,
        "rss",
    )
