"""Issue 14.1: nothing a publisher sends may drive the operator's terminal.

Each hostile input is a fixture in tests/fixtures/hostile/, served on loopback; the commands
run for real (``rssd run --once``, then ``status``/``fetch``/``posts``/``import-opml``/
``export-opml``/``check-config``). Human output must carry no control, bidi or zero-width
character; JSON output must carry none raw either, yet decode to the exact stored value.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rssd.commands.terminal import is_unsafe, safe_json, safe_lines, safe_text, strip_unsafe
from tests.conftest import FIXTURES, FeedServer
from tests.support.commands import cli, run_once_from
from tests.support.config import write_config
from tests.support.resilience import RawServer

HOSTILE = FIXTURES / "hostile"


def unsafe_in(text: str) -> list[str]:
    """The unsafe characters of an output (newlines are how lines end, not an attack)."""
    return [hex(ord(c)) for c in text if c != "\n" and is_unsafe(c)]


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text", "plain text"),
        ("\x1b]0;PWNED\x07", "\\x1b]0;PWNED\\x07"),
        ("a\x9b2Jb", "a\\x9b2Jb"),  # C1 CSI
        ("Invoice\u202efdp.exe", "Invoice\\u202efdp.exe"),  # right-to-left override
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("iso\u2066late\u2069", "iso\\u2066late\\u2069"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("line\nbreak\ttab\r", "line\\x0abreak tab\\x0d"),  # a tab is only a gap
        ("caf\u00e9 \u65e5\u672c \U0001f600", "caf\u00e9 \u65e5\u672c \U0001f600"),
    ],
)
def test_safe_text_table(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown
    assert not unsafe_in(safe_text(raw))
    assert safe_text(safe_text(raw)) == safe_text(raw)  # idempotent


#: Cf characters of Unicode 15 (Python 3.12+), unassigned in older tables.
LATER_FORMAT_CHARACTERS = set(range(0x13439, 0x13440))


def test_the_unsafe_class_is_exactly_the_unicode_categories() -> None:
    """Every code point: unsafe iff a control, format, surrogate or line/paragraph
    separator in this Python's Unicode database (the regex is the fast form of that)."""
    categories = {"Cc", "Cf", "Cs", "Zl", "Zp"}
    wrong = [
        hex(code)
        for code in range(0x110000)
        if is_unsafe(chr(code)) != (unicodedata.category(chr(code)) in categories)
        and code not in LATER_FORMAT_CHARACTERS
    ]
    assert wrong == []
    assert all(is_unsafe(chr(code)) for code in LATER_FORMAT_CHARACTERS)


def test_safe_lines_keeps_lines_and_strip_removes() -> None:
    assert safe_lines("a\x1b[2J\nb\u202e") == "a\\x1b[2J\nb\\u202e"
    assert strip_unsafe("Ti\x9btle\u202e\u200b") == "Title"


@pytest.mark.parametrize("value", ["\x1b]52;c;eA==\x07", "\x9b31m", "\u202e\u200b", "\U000e0041"])
def test_safe_json_decodes_to_the_exact_value(value: str) -> None:
    document = safe_json(json.dumps({"v": value, "ok": "caf\u00e9"}, ensure_ascii=False))
    assert not unsafe_in(document)
    assert "caf\u00e9" in document  # readable text stays readable
    assert json.loads(document) == {"v": value, "ok": "caf\u00e9"}


async def _serve_raw(name: str) -> tuple[RawServer, str]:
    server = RawServer()
    payload = (HOSTILE / name).read_bytes()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(payload)
        await writer.drain()

    server.route(f"/{name}", handler)
    await server.start()
    return server, server.url(f"/{name}")


@pytest.fixture
async def raw() -> AsyncIterator[dict[str, str]]:
    servers = []
    urls = {}
    for name in ("status-line-escape.http", "location-escape.http"):
        server, url = await _serve_raw(name)
        servers.append(server)
        urls[name] = url
    try:
        yield urls
    finally:
        for server in servers:
            await server.stop()


async def test_error_messages_quoting_servers_reach_no_terminal(
    feed_server: FeedServer, raw: dict[str, str], tmp_path: Path
) -> None:
    page = feed_server.static(
        "/page",
        (HOSTILE / "alternate-link-escape.html").read_bytes(),
        content_type="text/html",
    )
    urls = [page, raw["status-line-escape.http"], raw["location-escape.http"]]
    config = write_config(tmp_path / "config.toml", [{"url": url} for url in urls])
    await run_once_from(config)
    with sqlite3.connect(tmp_path / "rssd.sqlite3") as db:
        stored = dict(
            db.execute(
                "SELECT s.url, j.error_message FROM fetch_job j "
                "JOIN content_sources s ON s.id = j.content_source_id"
            ).fetchall()
        )
    # The hostile bytes did reach the database: the test exercises the escaping.
    assert "\x1b]0;PWNED\x07" in stored[page]
    assert "\x1b[31mREASON\x07" in stored[raw["status-line-escape.http"]]

    human = await cli("status", "-c", config)
    assert human.code == 0, human.err
    assert "PWNED" in human.out and "REASON" in human.out
    assert unsafe_in(human.out) == []
    assert "\\x1b]0;PWNED\\x07" in human.out  # shown, escaped: the operator sees it is there

    machine = await cli("status", "-c", config, "--json")
    assert unsafe_in(machine.out) == []
    messages = {s["url"]: s["last_error"]["error_message"] for s in machine.json()["sources"]}
    assert messages == stored  # exact, once decoded

    fetched = await cli("fetch", "-c", config, *urls)
    assert fetched.code == 1
    assert "PWNED" in fetched.out and "REASON" in fetched.out
    assert unsafe_in(fetched.out) == [] and unsafe_in(fetched.err) == []


async def test_titles_and_links_with_bidi_and_c1(feed_server: FeedServer, tmp_path: Path) -> None:
    url = feed_server.static("/bidi", (HOSTILE / "bidi-titles.rss").read_bytes())
    config = write_config(tmp_path / "config.toml", [{"url": url, "name": "n\u202eame\x9b2J"}])
    await run_once_from(config)

    human = await cli("posts", "-c", config)
    assert human.code == 0, human.err
    assert "Invoice\\u202efdp.exe\\u200b" in human.out
    assert unsafe_in(human.out) == []

    lines = await cli("posts", "-c", config, "--json")
    assert unsafe_in(lines.out) == []
    (post,) = lines.json_lines()
    assert "\u202e" in post["title"] and "\u202e" in post["url"]  # exact value kept

    status = await cli("status", "-c", config)
    assert unsafe_in(status.out) == []
    checked = await cli("check-config", "-c", config)
    assert checked.code == 0 and unsafe_in(checked.out) == []

    exported = await cli("export-opml", "-c", config)
    assert exported.code == 0
    assert unsafe_in(exported.out) == []
    outline = ET.fromstring(exported.out.encode()).find("body/outline")
    assert outline is not None and outline.get("text") == "name2J"


async def test_import_opml_with_c1_and_bidi(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", [])
    source = HOSTILE / "c1-titles.opml"
    dry = await cli("import-opml", "-c", config, "--dry-run", source)
    assert dry.code == 0, dry.err
    assert "Title31mred" in dry.out and "[Cat2Jegory]" in dry.out
    assert "\\x9b2J\\u202ey" in dry.out  # the rejected URL, shown escaped
    assert unsafe_in(dry.out) == []

    done = await cli("import-opml", "-c", config, source)
    assert done.code == 0, done.err
    written = config.read_text(encoding="utf-8")
    assert unsafe_in(written) == []
    assert 'name = "Title31mred"' in written
