"""The systemd unit and the shipped config.toml work together as the README installs them
(issue #16, item 6): every Documentation= file is installed, and the relative database of
the shipped config lands in systemd's StateDirectory, the one place the sandbox can write.
A real ``rssd run --once`` with ``$STATE_DIRECTORY`` set shows it. And the installed command
imports itself, in its parse workers too, wherever the operator runs it from."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

from rssd.models.config import load_config
from tests.conftest import FeedServer, rss
from tests.support.process import WAIT

UNIT = Path(__file__).parents[1] / "systemd" / "rssd.service"


# --- the unit and the shipped config, as the README installs them ------------------------

README = Path(__file__).parents[1] / "README.md"
SHIPPED_CONFIG = Path(__file__).parents[1] / "config.toml"


def _install_block() -> str:
    text = README.read_text()
    start = text.index("## Running under systemd")
    return text[start : text.index("systemctl enable --now rssd", start)]


def test_every_documentation_file_is_installed_by_the_readme_steps() -> None:
    documentation = [
        line.split("=", 1)[1].split()
        for line in UNIT.read_text().splitlines()
        if line.startswith("Documentation=")
    ]
    (uris,) = documentation
    steps = _install_block()
    for uri in uris:
        assert uri.startswith("file:///opt/rssd/"), uri
        name = uri.removeprefix("file:///opt/rssd/")
        assert re.search(rf"install .*\b{re.escape(name)}\b.* /opt/rssd/", steps), (uri, steps)
        assert (Path(__file__).parents[1] / name).exists(), name


def test_the_shipped_config_puts_the_database_in_the_state_directory() -> None:
    assert "StateDirectory=rssd" in UNIT.read_text()
    assert "-c /etc/rssd/config.toml" in UNIT.read_text()
    config = load_config(SHIPPED_CONFIG, {"STATE_DIRECTORY": "/var/lib/rssd"})
    assert config.database == Path("/var/lib/rssd/rssd.sqlite3")
    # From a checkout (no systemd), beside the file, as before.
    assert load_config(SHIPPED_CONFIG, {}).database == SHIPPED_CONFIG.parent / "rssd.sqlite3"


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_a_relative_database_goes_to_state_directory_when_set(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    url = feed_server.static("/feed", rss([{"title": "t", "guid": "g"}]))
    etc, state = tmp_path / "etc", tmp_path / "state"
    etc.mkdir()
    state.mkdir()
    config = etc / "config.toml"
    config.write_text(f'database = "rssd.sqlite3"\n[[feeds]]\nurl = "{url}"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rssd", "run", "--once", "-c", str(config),
        env={**os.environ, "STATE_DIRECTORY": str(state)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, err
    assert {"rssd.sqlite3", "rssd.sqlite3.lock"} <= set(files(state))
    assert files(etc) == ["config.toml"], "nothing is written beside the config"


async def test_a_folder_holding_another_rssd_package_changes_nothing(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """The installed ``rssd`` run from a folder that holds another package named rssd (an
    old checkout, say): the daemon and its parse workers use the installed one. The
    workers come from a forkserver started as ``python -c``, whose ``sys.path`` begins
    with the working folder unless PYTHONSAFEPATH is set (rssd/__main__.py): it preloaded
    the other package, and every document failed to parse."""
    script = Path(sys.executable).with_name("rssd")
    if not script.exists():  # pragma: no cover  (the README's install creates it)
        raise AssertionError(f"no console script beside {sys.executable}: pip install -e .")
    url = feed_server.static("/feed", rss([{"title": "t", "guid": "g"}]))
    (tmp_path / "rssd").mkdir()
    (tmp_path / "rssd" / "__init__.py").write_text('"""Another rssd, an old checkout."""\n')
    (tmp_path / "config.toml").write_text(f'database = "rssd.sqlite3"\n[[feeds]]\nurl = "{url}"\n')
    env = {key: value for key, value in os.environ.items() if key != "PYTHONSAFEPATH"}
    proc = await asyncio.create_subprocess_exec(
        str(script), "run", "--once", "-c", "config.toml", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    summary = next(event for event in events if event["message"] == "run.summary")
    assert (summary["completed"], summary["posts_new"]) == (1, 1), events
    assert not err, err
