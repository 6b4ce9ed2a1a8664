"""config.toml as the daemon holds it (frozen dataclasses), and its loader.

rssd/models/config_check.py checks the file with pydantic and says every mistake; this
module builds what the daemon runs with from the same TOML tables, without pydantic. A
start whose config.toml the daemon checked and synced as it is now (``trust``) builds it
without checking it again: importing pydantic and its models was about a third of a
daemon's start-up, which ``rssd run --once`` pays at every run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeAlias

import tomli

from rssd.models.categories import in_category, normalize_category
from rssd.models.files import readable_by_others
from rssd.models.headers import (
    DEFAULT_USER_AGENT,
    MAX_HEADERS_FILE_BYTES,
    auth_clash,
    check_headers,
    read_headers_file,
)
from rssd.models.location import (
    DEFAULT_DATABASE,
    ConfigError,
    base_directory,
    check_database,
    locate_database,
    read_config_bytes,
    secrets_directory,
)
from rssd.models.redact import redact
from rssd.models.tables import from_table
from rssd.models.urls import check_http_url, normalize_url
from rssd.models.users import UserConfig, WebhooksConfig, user_from, webhooks_from

# check_http_url, normalize_url and the header rules are re-exported: the commands import
# them from here.
__all__ = [
    "DEFAULT_USER_AGENT",
    "MAX_HEADERS_FILE_BYTES",
    "Config",
    "ConfigError",
    "FeedConfig",
    "auth_clash",
    "check_headers",
    "check_http_url",
    "config_of",
    "exposed_files",
    "in_category",
    "load_config",
    "normalize_category",
    "normalize_url",
    "parse_config",
    "read_config_bytes",
    "read_headers_file",
]

DEFAULT_CONFIG_PATH = Path("config.toml")


@dataclass(frozen=True)
class FeedConfig:
    """One ``[[feeds]]`` table. Unset settings inherit the top-level defaults."""

    url: str
    name: str | None = None
    #: Set here: this feed's fixed interval (no adaptive polling).
    interval_minutes: int | None = None
    #: Adaptive polling's bounds for this feed (unset: the global ones).
    min_interval_minutes: float | None = None
    max_interval_minutes: float | None = None
    timeout_seconds: float | None = None
    enabled: bool = True
    #: "Blogs / Linux": OPML folders, nested with " / ".
    category: str | None = None
    #: Request headers (tokens: ``Authorization = "Bearer ..."``); never shown or logged.
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    #: A file of ``Name: value`` lines read at load (the secret stays out of config.toml;
    #: fits systemd's LoadCredential=). Relative paths: ``secrets_directory``.
    headers_file: str | None = None


@dataclass(frozen=True)
class Config:
    """The whole config.toml: top-level settings plus the feed list. The bounds of each
    value are config_check's."""

    #: A SQLite file, or a ``postgresql://`` URL (libpq conninfo) for several daemons.
    database: Path | str = DEFAULT_DATABASE
    max_concurrency: int = 20
    max_per_host: int = 2
    #: At least this long between the starts of two requests to one host, across every
    #: daemon of the database (0: no gap, only max_per_host).
    host_min_gap_seconds: float = 1.0
    #: The starting interval of a feed with no history (adaptive polling takes over).
    interval_minutes: int = 60
    #: Adaptive polling never goes below / above these (each feed may set its own).
    min_interval_minutes: float = 15.0
    max_interval_minutes: float = 1440.0
    timeout_seconds: float = 30.0
    max_body_mb: float = 10.0
    max_redirects: int = 5
    user_agent: str = DEFAULT_USER_AGENT
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    keep_fetch_jobs_days: int = 90
    keep_posts_days: int | None = None  # None: posts are kept forever
    shutdown_grace_seconds: float = 10.0
    parse_timeout_seconds: float = 20.0
    sanitize_html: bool = True
    # Redirects from a public address to a loopback, private, link-local... one are
    # refused unless this is true; feed URLs written on a private address always work.
    allow_private_networks: bool = False
    #: Prometheus textfile-collector output (rssd/metrics.py); None: no metrics file.
    metrics_file: Path | None = None
    feeds: list[FeedConfig] = field(default_factory=list)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    users: tuple[UserConfig, ...] = ()

    @property
    def database_url(self) -> str | None:
        """The PostgreSQL URL, or None for a SQLite file."""
        return self.database if isinstance(self.database, str) else None

    @property
    def database_path(self) -> Path | None:
        """The SQLite file, or None for PostgreSQL."""
        return self.database if isinstance(self.database, Path) else None

    @property
    def database_label(self) -> str:
        """The database for messages and logs: a path, or the URL without its password."""
        if isinstance(self.database, Path):
            return str(self.database)
        return redact(self.database, keep_user=True)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    def feed_interval(self, feed: FeedConfig) -> int:
        return feed.interval_minutes or self.interval_minutes

    def feed_bounds(self, feed: FeedConfig) -> tuple[float, float]:
        """Adaptive polling's (min, max) interval for ``feed``, in minutes."""
        return (
            feed.min_interval_minutes or self.min_interval_minutes,
            feed.max_interval_minutes or self.max_interval_minutes,
        )

    def agent_for(self, subscribers: int) -> str:
        """The User-Agent of a feed's requests: ``user_agent`` when config.toml sets one of
        its own, else rssd's with the number of users subscribed to the feed."""
        if self.user_agent != DEFAULT_USER_AGENT:
            return self.user_agent
        return subscribed_agent(self.user_agent, subscribers)

    def feed_timeout(self, feed: FeedConfig) -> float:
        return feed.timeout_seconds or self.timeout_seconds

    def feed_headers(self, url: str) -> dict[str, str]:
        """The request headers configured for the feed with this URL (none if unknown)."""
        key = normalize_url(url)
        for feed in self.feeds:
            if feed.headers and normalize_url(feed.url) == key:
                return feed.headers
        return {}


def subscribed_agent(agent: str, subscribers: int) -> str:
    """``rssd/0.1.0 (+URL)`` -> ``rssd/0.1.0 (+URL; 3 subscribers)``."""
    count = f"{subscribers} subscriber{'' if subscribers == 1 else 's'}"
    return f"{agent[:-1]}; {count})" if agent.endswith(")") else f"{agent} ({count})"


#: Asked with the database a config.toml names, before it is checked: whether that file
#: was checked as it is now (the daemon's start: ``rssd.daemon.run.synced_as_is``).
Trust: TypeAlias = Callable[[Path | str], bool]


def load_config(
    path: Path, environ: Mapping[str, str] = os.environ, *, trust: Trust | None = None
) -> Config:
    """Read, parse and check config.toml; raise ConfigError with every problem found.
    ``trust``: see ``parse_config``.

    Blocking file I/O: the daemon calls it off its event loop."""
    try:
        text = read_config_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"cannot read: {exc}"]) from None
    return parse_config(text, path, environ, trust=trust)


def parse_config(
    text: str, path: Path, environ: Mapping[str, str] = os.environ, *, trust: Trust | None = None
) -> Config:
    """Check TOML text and build the Config; relative paths resolve against
    ``base_directory``.

    When ``trust`` says this text was checked before, as it is now, it is built without
    checking it again (pydantic is not imported). What lies outside the text is read and
    checked either way: the files it names. A text that does not build as a checked one
    would, or that ``trust`` does not vouch for, is checked in full."""
    try:
        raw = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        raise ConfigError(path, [f"TOML syntax error: {exc}"]) from None
    except RecursionError:  # tomli recurses per nesting level
        raise ConfigError(path, ["TOML syntax error: arrays or tables nested too deeply"]) from None
    return config_of(raw, path, environ, trust=trust)


def config_of(
    raw: Mapping[str, Any],
    path: Path = DEFAULT_CONFIG_PATH,
    environ: Mapping[str, str] = os.environ,
    *,
    trust: Trust | None = None,
) -> Config:
    """``parse_config`` of TOML already parsed (``raw``: its tables); the tests and the
    benches build their configs with it."""
    secrets = secrets_directory(path, environ)
    config = _trusted(raw, path, environ, secrets, trust) if trust is not None else None
    if config is None:
        from rssd.models.config_check import check_tables  # noqa: PLC0415  (pydantic)

        check_tables(raw, path, secrets)
        try:
            config = _built(raw, secrets)
        except ValueError as exc:  # a secret file changed since the check read it
            raise ConfigError(path, [str(exc)]) from None
    database = locate_database(config.database, path, environ)
    if database != config.database:
        config = replace(config, database=database)
    if config.metrics_file is not None and not config.metrics_file.is_absolute():
        base = base_directory(path, environ)
        config = replace(config, metrics_file=base / config.metrics_file)
    return _with_header_files(config, path, secrets)


def _trusted(
    raw: Mapping[str, Any], path: Path, environ: Mapping[str, str], secrets: Path, trust: Trust
) -> Config | None:
    """The Config of tables ``trust`` vouches for, or None (check them)."""
    try:
        config = _built(raw, secrets)
        vouched = trust(locate_database(config.database, path, environ))
    except Exception:
        return None
    return config if vouched else None


def _built(raw: Mapping[str, Any], secrets: Path) -> Config:
    """The Config of checked tables (rssd/models/tables.py)."""
    return from_table(
        Config,
        raw,
        database=check_database,
        feeds=_feeds,
        webhooks=webhooks_from,
        users=lambda tables: tuple(user_from(table, secrets) for table in tables),
    )


def _feeds(tables: list[Mapping[str, Any]]) -> list[FeedConfig]:
    return [
        from_table(
            FeedConfig,
            table,
            url=str.strip,  # as check_http_url accepted it
            category=normalize_category,
            headers=dict,
        )
        for table in tables
    ]


def _with_header_files(config: Config, path: Path, secrets: Path) -> Config:
    """Merge each ``headers_file`` into its feed's ``headers``, read now (at every load and
    reload); every unreadable or malformed file is an error naming feed and file."""
    errors: list[str] = []
    feeds: list[FeedConfig] = []
    for index, feed in enumerate(config.feeds):
        if feed.headers_file is None:
            feeds.append(feed)
            continue
        file = Path(feed.headers_file)
        file = file if file.is_absolute() else secrets / file
        try:
            extra = read_headers_file(file)
        except ValueError as exc:
            errors.append(f"feeds[{index}].headers_file: {exc} (feed {redact(feed.url)})")
            continue
        clash = {name.lower() for name in extra} & {name.lower() for name in feed.headers}
        if clash:
            errors.append(
                f"feeds[{index}].headers_file: {', '.join(sorted(clash))} also set in headers "
                f"(feed {redact(feed.url)})"
            )
            continue
        problem = auth_clash(feed.url, extra)
        if problem:
            errors.append(f"feeds[{index}].headers_file: {problem} (feed {redact(feed.url)})")
            continue
        feeds.append(replace(feed, headers={**feed.headers, **extra}))
    if errors:
        raise ConfigError(path, errors)
    return replace(config, feeds=feeds)


@dataclass(frozen=True)
class ExposedFile:
    """A file of secrets that every user of the machine may read (a warning, not an
    error: the operator may have reasons, and refusing would stop the daemon)."""

    key: str  # users[0].secret_file, feeds[2].headers_file
    path: Path  # as configured, made absolute
    target: Path  # what it leads to, symlinks resolved: the file whose mode counts
    mode: int

    def __str__(self) -> str:
        via = f" (a link to {self.target})" if self.target != self.path else ""
        return (
            f"{self.key}: {self.path}{via} is readable by every user of this machine "
            f"(mode {self.mode:04o}); make it readable by rssd only (chmod o-r)"
        )


def exposed_files(
    config: Config, path: Path, environ: Mapping[str, str] = os.environ
) -> list[ExposedFile]:
    """The ``secret_file``s and ``headers_file``s of ``config`` (loaded from ``path``)
    that others may read, relative names resolved as loading resolves them."""
    base = secrets_directory(path, environ)
    named = [
        (f"users[{index}].secret_file", user.secret_file)
        for index, user in enumerate(config.users)
        if user.secret_file is not None
    ] + [
        (f"feeds[{index}].headers_file", Path(feed.headers_file))
        for index, feed in enumerate(config.feeds)
        if feed.headers_file is not None
    ]
    found = []
    for key, named_path in named:
        file = named_path if named_path.is_absolute() else base / named_path
        mode = readable_by_others(file)
        if mode is not None:
            found.append(ExposedFile(key, file, file.resolve(), mode))
    return found


def inline_secrets(config: Config) -> list[str]:
    """The keys of ``config`` that hold a secret in config.toml itself (a webhook secret,
    request headers, a password in a feed's or the database's URL): the file's own mode
    must then keep others out (``rssd check-config`` warns)."""
    keys = [
        f"users[{index}].secret"
        for index, user in enumerate(config.users)
        if user.secret_file is None
    ]
    for index, feed in enumerate(config.feeds):
        if redact(feed.url) != feed.url:
            keys.append(f"feeds[{index}].url")
        if feed.headers and feed.headers_file is None:
            keys.append(f"feeds[{index}].headers")
    if isinstance(config.database, str) and redact(config.database, keep_user=True) != (
        config.database
    ):
        keys.append("database")
    return keys
