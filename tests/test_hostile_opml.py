"""Issue 14.7: OPML import is linear, capped before reading, and checks the decoded text.

The hostile inputs: 20,000 nested outlines (1.2 MB; issue 14 measured 3.5 GB and 14.5 s on
``--dry-run``), a file larger than the cap, a FIFO, and a UTF-16 document without a BOM
whose internal ``<!ENTITY>`` slipped past the DTD check (tests/fixtures/hostile/).
Memory is measured with tracemalloc, which counts allocations, not time.
"""

from __future__ import annotations

import os
import threading
import tracemalloc
from pathlib import Path

import pytest

from rssd.commands import opml
from rssd.models.config import load_config
from tests.conftest import FIXTURES
from tests.support.commands import cli, cli_sync
from tests.support.config import write_config

HOSTILE = FIXTURES / "hostile"


def nested_opml(depth: int) -> bytes:
    """The hostile input of the issue: ``depth`` outlines, each a feed inside the last."""
    opens = "".join(f'<outline text="c{i}" xmlUrl="http://e.org/{i}">' for i in range(depth))
    return (
        '<?xml version="1.0"?>\n<opml version="2.0"><head><title>nested</title></head><body>'
        + opens
        + "</outline>" * depth
        + "</body></opml>\n"
    ).encode()


def peak_bytes(data: bytes) -> int:
    tracemalloc.start()
    try:
        opml.parse(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_nested_outlines_cost_linear_memory() -> None:
    document = nested_opml(20_000)
    assert 1_000_000 < len(document) < 1_500_000
    found = opml.parse(document)
    assert len(found.feeds) == 20_000
    assert max(len(feed.category) for feed in found.feeds) == opml.MAX_CATEGORY_DEPTH
    small, large = peak_bytes(nested_opml(5_000)), peak_bytes(nested_opml(20_000))
    # Quadratic paths made 4x the outlines cost 16x the memory; linear work costs ~4x.
    assert large < 6 * small, (small, large)
    assert large < 200 * 1024 * 1024


async def test_nested_outlines_dry_run_prints_short_lines(tmp_path: Path) -> None:
    source = tmp_path / "nested.opml"
    source.write_bytes(nested_opml(20_000))
    config = write_config(tmp_path / "config.toml", [])
    result = await cli("import-opml", "-c", config, "--dry-run", source)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 20_001
    assert max(map(len, lines)) < 200


def test_the_size_cap_comes_before_reading(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", [])
    huge = tmp_path / "huge.opml"
    with huge.open("wb") as file:  # sparse: 1 GB that takes no disk and must not be read
        file.truncate(1024 * 1024 * 1024)
    tracemalloc.start()
    try:
        result = cli_sync("import-opml", "-c", config, huge)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.code == 1
    assert "larger than 20 MB" in result.err
    assert peak < 50 * 1024 * 1024


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", [])
    fifo = tmp_path / "feeds.opml"
    os.mkfifo(fifo)
    outcome: list[object] = []
    worker = threading.Thread(
        target=lambda: outcome.append(cli_sync("import-opml", "-c", config, fifo)), daemon=True
    )
    worker.start()
    worker.join(timeout=60)  # a hang guard only
    assert outcome, "import-opml blocked on a FIFO"
    result = outcome[0]
    assert result.code == 1  # type: ignore[attr-defined]
    assert "not a regular file" in result.err  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["utf16-no-bom-entity.opml", "utf16be-no-bom-entity.opml"])
def test_utf16_without_bom_is_checked_decoded(name: str, tmp_path: Path) -> None:
    data = (HOSTILE / name).read_bytes()
    assert not data.startswith((b"\xff\xfe", b"\xfe\xff"))
    assert opml.sniff_encoding(data).startswith("utf-16")
    with pytest.raises(opml.OpmlError, match="declares a DTD or entities"):
        opml.parse(data)
    config = write_config(tmp_path / "config.toml", [])
    result = cli_sync("import-opml", "-c", config, HOSTILE / name)
    assert result.code == 1
    assert "ENTITY-EXPANDED" not in config.read_text()


def test_utf16_without_bom_and_without_dtd_still_imports() -> None:
    document = (
        '<?xml version="1.0" encoding="UTF-16"?><opml version="2.0"><body>'
        '<outline text="caf\u00e9" xmlUrl="http://example.org/f"/></body></opml>'
    )
    found = opml.parse(document.encode("utf-16-le"))
    assert [(f.url, f.title) for f in found.feeds] == [("http://example.org/f", "caf\u00e9")]


def test_a_nul_character_is_refused() -> None:
    with pytest.raises(opml.OpmlError, match="NUL"):
        opml.parse(b"<opml><body>\x00</body></opml>")


def test_no_toml_injection_through_a_title(tmp_path: Path) -> None:
    """What held: a title written to config.toml stays one string value."""
    evil = 'x"\n[[feeds]]\nurl = "http://evil.example/"\n#'
    source = tmp_path / "evil.opml"
    source.write_text(
        '<opml version="2.0"><body><outline text="'
        + evil.replace('"', "&quot;").replace("\n", "&#10;")
        + '" xmlUrl="http://example.org/f"/></body></opml>'
    )
    config = write_config(tmp_path / "config.toml", [])
    assert cli_sync("import-opml", "-c", config, source).code == 0
    loaded = load_config(config)
    assert [feed.url for feed in loaded.feeds] == ["http://example.org/f"]
