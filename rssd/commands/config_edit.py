"""Adding ``[[feeds]]`` to config.toml without disturbing anything the operator wrote.

config.toml holds top-level keys, then ``[[feeds]]`` tables, so new tables go at the end
of the file: every byte already there stays as it is, comments included. tomlkit renders
the new tables (quoting and escaping done right), and the result is validated as a config
before the file is replaced, atomically, keeping its mode and owner.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import tomlkit
from msgspec import Struct
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import AoT, Array

from rssd.models.config import ConfigError, normalize_url, parse_config


class ConfigEditError(Exception):
    """The edit cannot be made safely; config.toml is left untouched."""


class NewFeed(Struct, frozen=True):
    url: str
    name: str | None = None
    category: str | None = None
    enabled: bool = True


def _table(feed: NewFeed) -> dict[str, str | bool]:
    table: dict[str, str | bool] = {"url": feed.url}
    if feed.name:
        table["name"] = feed.name
    if feed.category:
        table["category"] = feed.category
    if not feed.enabled:
        table["enabled"] = False
    return table


def with_feeds(text: str, feeds: Sequence[NewFeed], comment: str, path: Path) -> str:
    """``text`` with ``feeds`` added as ``[[feeds]]`` tables, preceded by ``comment``.

    A config whose feeds are an inline array (``feeds = [...]``) gets them appended to
    that array instead: a ``[[feeds]]`` table after it would not be valid TOML.
    """
    try:
        document = tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigEditError(f"{path}: cannot be edited: {exc}") from None
    existing = document.get("feeds")
    if isinstance(existing, Array):
        for feed in feeds:
            inline = tomlkit.inline_table()
            inline.update(_table(feed))
            existing.append(inline)
        new_text = tomlkit.dumps(document)
    elif existing is None or isinstance(existing, AoT):
        block = tomlkit.document()
        block.add(tomlkit.comment(comment))
        tables = tomlkit.aot()
        for feed in feeds:
            table = tomlkit.table()
            table.update(_table(feed))
            tables.append(table)
        block.append("feeds", tables)
        separator = (
            "" if not text or text.endswith("\n\n") else "\n" if text.endswith("\n") else "\n\n"
        )
        new_text = text + separator + tomlkit.dumps(block)
    else:
        raise ConfigEditError(f"{path}: 'feeds' is neither [[feeds]] tables nor an array")
    _check(text, new_text, feeds, path)
    return new_text


def _check(old: str, new: str, feeds: Sequence[NewFeed], path: Path) -> None:
    """The edited file must be a valid config listing the old feeds plus exactly the new."""
    try:
        before = parse_config(old, path)
        after = parse_config(new, path)
    except ConfigError as exc:
        raise ConfigEditError(f"the edited config would be invalid:\n{exc}") from None
    expected = [normalize_url(f.url) for f in before.feeds] + [normalize_url(f.url) for f in feeds]
    if [normalize_url(f.url) for f in after.feeds] != expected:
        raise ConfigEditError(f"{path}: the edit did not produce the expected feed list")


def replace_file(path: Path, new_text: str, expected: bytes) -> None:
    """Write ``new_text`` over ``path`` atomically, unless someone changed the file since
    it was read as ``expected``. A symlinked config is written through the link."""
    target = path.resolve()
    if target.read_bytes() != expected:
        raise ConfigEditError(f"{path} changed while rssd was editing it; nothing written")
    stat = target.stat()
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(new_text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        temp.chmod(stat.st_mode & 0o7777)
        with contextlib.suppress(PermissionError):  # only root can give a file away
            os.chown(temp, stat.st_uid, stat.st_gid)
        temp.replace(target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
