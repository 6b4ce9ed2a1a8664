"""The one config writer of the suite, and the in-memory Config for in-process tests.

``write_config`` writes a real config.toml the way an editor saves (a new file renamed over
the old one), so a running daemon's watcher sees every call as one complete edit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from rssd.models.config import Config, config_of

#: The suite's feeds are served from one or two loopback hosts, dozens of feeds each: one
#: second between request starts to a host (the default) would turn every test of many
#: feeds into a wait. The host gap's own tests (test_repo_hosts, test_politeness_farm) set it.
NO_GAP = 0.0

#: A TOML value as written: str, int, float, bool or Path.
TomlValue = object
#: A feed: its URL alone, or its ``[[feeds]]`` table (``{"url": ..., "name": ...}``).
Feed = str | Mapping[str, TomlValue]


def toml_value(value: TomlValue) -> str:
    """A value as TOML: a mapping as an inline table (a feed's ``headers``)."""
    if isinstance(value, Mapping):
        pairs = ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + pairs + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def config_text(feeds: Sequence[Feed] = (), **settings: TomlValue) -> str:
    """config.toml's text: top-level ``settings``, then one ``[[feeds]]`` table per feed."""
    lines = [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    for feed in feeds:
        table = {"url": feed} if isinstance(feed, str) else feed
        lines += ["", "[[feeds]]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def replace_file(path: Path, data: str | bytes) -> None:
    """Save like an editor does: write a temporary file, then rename it over the old one."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if isinstance(data, bytes):
        temporary.write_bytes(data)
    else:
        temporary.write_text(data, encoding="utf-8")
    temporary.replace(path)  # atomic: a new inode at the old path


def write_config(path: Path, feeds: Sequence[Feed] = (), **settings: TomlValue) -> Path:
    """Write config.toml at ``path``; the database is ``rssd.sqlite3`` beside it unless
    ``database`` is given. Returns ``path``."""
    settings.setdefault("database", "rssd.sqlite3")
    settings.setdefault("host_min_gap_seconds", NO_GAP)
    replace_file(path, config_text(feeds, **settings))
    return path


def make_config(tmp_path: Path, feeds: Sequence[Feed], **settings: object) -> Config:
    """A Config (no file) with these feeds (URLs or tables) and its database in
    ``tmp_path``."""
    return config_of(
        {
            "database": str(tmp_path / "rssd.sqlite3"),
            "host_min_gap_seconds": NO_GAP,
            "feeds": [{"url": feed} if isinstance(feed, str) else dict(feed) for feed in feeds],
            **settings,
        }
    )
