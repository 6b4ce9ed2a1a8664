"""Where config.toml's database is, read without validating the config.

The model (rssd.models.config) and the commands that must find the database even when the
config does not validate (``rssd status``) share these, so both read ``database`` the same
way. Nothing here imports pydantic: ``status`` beside a config the daemon has validated
needs no more than this (rssd/commands/status.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote

import tomli

from rssd.clock import to_iso
from rssd.models.files import FileTooLarge, read_regular_file
from rssd.models.redact import split_userinfo, unmaskable

PG_SCHEMES = ("postgresql://", "postgres://")
DEFAULT_DATABASE = Path("rssd.sqlite3")
#: A config of 10,000 feeds is ~0.6 MB; anything far larger is not a config file.
MAX_CONFIG_BYTES = 16 * 1024 * 1024
#: Set by systemd for a unit with StateDirectory=: where a relative database belongs.
STATE_DIRECTORY_ENV = "STATE_DIRECTORY"
#: Set by systemd for a unit with LoadCredential=: where its copies of the secrets are.
CREDENTIALS_DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"


class ConfigError(Exception):
    """config.toml cannot be used; ``errors`` holds one line per problem."""

    def __init__(self, path: Path, errors: Sequence[str]) -> None:
        self.path = path
        self.errors = list(errors)
        super().__init__("\n".join(f"{path}: {line}" for line in self.errors))


def read_config_bytes(path: Path, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The file's bytes, if it is a regular file (a symlink to one is fine) of at most
    ``limit`` bytes (rssd.models.files): a FIFO or ``/dev/zero`` is refused unread."""
    try:
        return read_regular_file(path, limit)
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except FileTooLarge:
        raise ConfigError(
            path, [f"larger than {limit // (1024 * 1024)} MB: not a config file"]
        ) from None
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror or exc}"]) from None


def check_database(value: object) -> object:
    """``database`` as config.toml gives it: a ``postgresql://`` URL stays text, any other
    text becomes a Path; what cannot be a database is a ValueError. Shared by the model
    and by ``fallback_database``, so a broken config.toml is read the same way."""
    if isinstance(value, str) and value.strip() in ("", "."):
        raise ValueError('must name a database file, e.g. "rssd.sqlite3"')
    if isinstance(value, str) and value.startswith(PG_SCHEMES):
        authority = value.partition("://")[2].partition("/")[0]
        ours = split_userinfo(value)
        if authority.count("@") > 1 or (
            "@" in authority and (ours is None or ours[1] != authority.partition("@")[0])
        ):
            # libpq's userinfo ends at the first "@" before a "/", redaction's at the
            # last "@" before a "/", "?" or "#": where they differ, refuse. A second "@"
            # before the "/" is one in the password even when both stop at the first
            # ("u:a@?b@host/db": libpq reads the password "a" and the rest "?b@host/db"
            # as a query, which no redaction takes for a password).
            raise ValueError(
                "the database URL's credentials hold '@', '?' or '#': write them "
                "percent-encoded (%40, %3F, %23)"
            )
        unsafe = unmaskable(value)
        if unsafe is not None:  # libpq reads it, but no log line could mask it
            raise ValueError(
                f"the database URL's password contains {unsafe!r}: write it percent-encoded "
                f"({quote(unsafe, safe='')})"
            )
        return value  # libpq's to judge (postgresql:///rssd is the local socket)
    if isinstance(value, str) and "://" in value:
        raise ValueError(
            'must be a SQLite file path or a "postgresql://" URL, not ' + _scheme(value)
        )
    return Path(value) if isinstance(value, str) else value


def base_directory(path: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """Where relative ``database`` and ``metrics_file`` paths point: systemd's
    ``$STATE_DIRECTORY`` when set (the unit's writable /var/lib/rssd; the config lives in
    read-only /etc/rssd), else the config file's folder."""
    state = environ.get(STATE_DIRECTORY_ENV, "").split(":")[0]
    if state and Path(state).is_absolute():
        return Path(state)
    return path.parent.resolve()


def secrets_directory(path: Path, environ: Mapping[str, str] = os.environ) -> Path:
    """Where relative secret files point (``secret_file``, ``headers_file``, a database
    URL's ``passfile``): systemd's ``$CREDENTIALS_DIRECTORY`` when set (the unit's copies
    of its ``LoadCredential=`` files, readable by the service alone), else the config
    file's folder, where those files are. So one config.toml names the same secrets in
    the service and in an operator's shell, with no variable to set."""
    credentials = environ.get(CREDENTIALS_DIRECTORY_ENV, "")
    if credentials and Path(credentials).is_absolute():
        return Path(credentials)
    return path.parent.resolve()


def locate_database(
    database: Path | str, path: Path, environ: Mapping[str, str] = os.environ
) -> Path | str:
    """A relative SQLite path under ``base_directory``; a PostgreSQL URL with a relative
    ``passfile=`` with that file under ``secrets_directory``; anything else as is."""
    if isinstance(database, Path) and not database.is_absolute():
        return base_directory(path, environ) / database
    if isinstance(database, str):
        return _locate_passfile(database, secrets_directory(path, environ))
    return database


_PASSFILE = re.compile(r"([?&]passfile=)([^&#]*)")


def _locate_passfile(url: str, base: Path) -> str:
    """libpq's ``passfile`` parameter made absolute (libpq would read a relative one
    against the working directory, which differs between the service and a shell)."""

    def absolute(match: re.Match[str]) -> str:
        name = unquote(match.group(2))
        if not name or Path(name).is_absolute():
            return match.group(0)
        return match.group(1) + quote(str(base / name), safe="/")

    return _PASSFILE.sub(absolute, url)


def fallback_database(path: Path, environ: Mapping[str, str] = os.environ) -> Path | str:
    """The database a config.toml that does not validate most likely names: its
    ``database`` if that much is readable and valid, else the default, located as
    ``parse_config`` does. For ``rssd status``, which shows the database's view exactly
    when the config is broken."""
    try:
        raw = tomli.loads(read_config_bytes(path).decode("utf-8"))
    except (ConfigError, UnicodeDecodeError, tomli.TOMLDecodeError, RecursionError):
        raw = {}
    try:
        database = check_database(raw.get("database", DEFAULT_DATABASE))
    except ValueError:
        database = DEFAULT_DATABASE
    if not isinstance(database, Path | str):  # a number, a table: not a database
        database = DEFAULT_DATABASE
    return locate_database(database, path, environ)


def _scheme(value: str) -> str:
    return repr(value.split("://", 1)[0] + "://")


def config_mtime(path: Path) -> str | None:
    """When config.toml was last written, as config_sync records it (None: no such file).
    The daemon records it at each sync; ``status`` compares it with the file's."""
    try:
        return to_iso(datetime.fromtimestamp(path.stat().st_mtime, UTC))
    except OSError:
        return None
