"""config.toml as pydantic models, and the loader that turns every mistake into a clear message.

Operators edit config.toml by hand on a server, so every error names the file, the key path
and the feed it belongs to, and unknown keys suggest the key that was probably meant.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rssd import PROJECT_URL, __version__
from rssd.models.categories import in_category, normalize_category
from rssd.models.files import FileTooLarge, read_regular_file, readable_by_others
from rssd.models.location import (
    DEFAULT_DATABASE,
    ConfigError,
    base_directory,
    check_database,
    locate_database,
    read_config_bytes,
    secrets_directory,
)
from rssd.models.redact import redact, split_userinfo
from rssd.models.urls import check_http_url, normalize_url
from rssd.models.users import UserConfig, WebhooksConfig, check_users

# check_http_url and normalize_url are re-exported: the commands import them from here.
__all__ = [
    "DEFAULT_USER_AGENT",
    "Config",
    "ConfigError",
    "FeedConfig",
    "check_headers",
    "check_http_url",
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
#: rssd's name, version and home, for publishers reading their logs; a feed's requests add
#: its subscriber count (``Config.agent_for``), as hosted aggregators do.
DEFAULT_USER_AGENT = f"rssd/{__version__} (+{PROJECT_URL})"

# Upper bounds keep every value one the daemon can compute with (a timedelta, a SQLite
# integer, setitimer): a value that validates must be a value that runs.
Minutes = Annotated[int, Field(gt=0, le=525_600)]  # a year
Seconds = Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)]  # a day
Days = Annotated[int, Field(gt=0, le=36_500)]  # a century: "forever" in practice
#: Fractions allowed: a test farm polls every few seconds (0.05 = 3 s).
FractionalMinutes = Annotated[float, Field(gt=0, le=525_600, allow_inf_nan=False)]


#: RFC 9110 token: what a header name may be made of.
#: A headers_file holds a few header lines; anything larger is not one (/dev/zero, a log).
MAX_HEADERS_FILE_BYTES = 64 * 1024
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: Set by rssd itself; a feed's own value would break the fetch or its bounds.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}
)


def check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names must be tokens and values one line; the message never quotes a value
    (it is usually a secret)."""
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid HTTP header name")
        if name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"{name!r} is set by rssd itself and cannot be configured")
        if not isinstance(value, str) or re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value):
            raise ValueError(f"the value of header {name!r} must be one line of text")
    return dict(headers)


def read_headers_file(path: Path) -> dict[str, str]:
    """``Name: value`` lines (blank lines and ``#`` comments ignored); raises ValueError
    naming the file and line, never quoting the line (it holds a secret)."""
    try:
        text = read_regular_file(path, MAX_HEADERS_FILE_BYTES).decode("utf-8")
    except FileTooLarge:
        raise ValueError(f"{path} is larger than {MAX_HEADERS_FILE_BYTES // 1024} KiB") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"cannot read {path}: {reason}") from None
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, colon, value = stripped.partition(":")
        if not colon or not name.strip():
            raise ValueError(f"{path} line {number}: expected `Name: value`")
        headers[name.strip()] = value.strip()
    try:
        return check_headers(headers)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def auth_clash(url: str, headers: Mapping[str, str]) -> str | None:
    """Why a feed's credentials cannot work, or None. A URL's ``user:password@`` becomes
    an Authorization header; with one configured as well, aiohttp refuses every request
    before any exchange, so it is a config error, not a fetch failure."""
    if split_userinfo(url) is None or not any(name.lower() == "authorization" for name in headers):
        return None
    return (
        "credentials in the URL (user:password@) and an Authorization header cannot be "
        "combined: keep one of them"
    )


class FeedConfig(BaseModel):
    """One ``[[feeds]]`` table. Unset settings inherit the top-level defaults."""

    # strict: TOML has real types, so `interval_minutes = true` or `enabled = "no"` is a
    # mistake to report, not a value to coerce (into 1 minute, into false).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    url: str
    name: str | None = None
    #: Set here: this feed's fixed interval (no adaptive polling).
    interval_minutes: Minutes | None = None
    #: Adaptive polling's bounds for this feed (unset: the global ones).
    min_interval_minutes: FractionalMinutes | None = None
    max_interval_minutes: FractionalMinutes | None = None
    timeout_seconds: Seconds | None = None
    enabled: bool = True
    #: "Blogs / Linux": OPML folders, nested with " / ".
    category: str | None = None
    #: Request headers (tokens: ``Authorization = "Bearer ..."``); never shown or logged.
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    #: A file of ``Name: value`` lines read at load (the secret stays out of config.toml;
    #: fits systemd's LoadCredential=). Relative paths: ``secrets_directory``.
    headers_file: str | None = None

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("category")
    @classmethod
    def _check_category(cls, value: str | None) -> str | None:
        return None if value is None else normalize_category(value)

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        return check_headers(value)

    @model_validator(mode="after")
    def _one_authorization(self) -> FeedConfig:
        problem = auth_clash(self.url, self.headers)
        if problem:
            raise ValueError(problem)
        return self


class Config(BaseModel):
    """The whole config.toml: top-level settings plus the feed list."""

    # strict: TOML has real types, so `interval_minutes = true` or `enabled = "no"` is a
    # mistake to report, not a value to coerce (into 1 minute, into false).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: A SQLite file, or a ``postgresql://`` URL (libpq conninfo) for several daemons.
    database: Annotated[Path, Field(strict=False)] | Annotated[str, Field(strict=False)] = (
        DEFAULT_DATABASE
    )
    max_concurrency: Annotated[int, Field(gt=0, le=1000)] = 20
    max_per_host: Annotated[int, Field(gt=0, le=100)] = 2
    #: At least this long between the starts of two requests to one host, across every
    #: daemon of the database (0: no gap, only max_per_host).
    host_min_gap_seconds: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)] = 1.0
    #: The starting interval of a feed with no history (adaptive polling takes over).
    interval_minutes: Minutes = 60
    #: Adaptive polling never goes below / above these (each feed may set its own).
    min_interval_minutes: FractionalMinutes = 15.0
    max_interval_minutes: FractionalMinutes = 1440.0
    timeout_seconds: Seconds = 30.0
    max_body_mb: Annotated[float, Field(gt=0, le=1024, allow_inf_nan=False)] = 10.0
    max_redirects: Annotated[int, Field(ge=0, le=30)] = 5
    # No control characters: a CR LF would make every request's header invalid.
    user_agent: Annotated[str, Field(min_length=1, pattern=r"^[^\x00-\x1f\x7f]+$")] = (
        DEFAULT_USER_AGENT
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    keep_fetch_jobs_days: Days = 90
    keep_posts_days: Days | None = None  # None: posts are kept forever
    shutdown_grace_seconds: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)] = 10.0
    parse_timeout_seconds: Seconds = 20.0
    sanitize_html: bool = True
    # Redirects from a public address to a loopback, private, link-local... one are
    # refused unless this is true; feed URLs written on a private address always work.
    allow_private_networks: bool = False
    #: Prometheus textfile-collector output (rssd/metrics.py); None: no metrics file.
    metrics_file: Annotated[Path | None, Field(strict=False)] = None
    feeds: list[FeedConfig] = Field(default_factory=list)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    # After ``feeds``: the users' check reads the validated feed list.
    users: Annotated[tuple[UserConfig, ...], Field(strict=False)] = ()

    @field_validator("database", mode="before")
    @classmethod
    def _database_names_a_file(cls, value: object) -> object:
        return check_database(value)

    @field_validator("feeds")
    @classmethod
    def _unique_urls(cls, feeds: list[FeedConfig]) -> list[FeedConfig]:
        """A field validator, not a model one: it runs even when other keys are wrong, so
        a duplicate is reported together with the rest."""
        seen: dict[str, int] = {}
        for index, feed in enumerate(feeds):
            key = normalize_url(feed.url)
            if key in seen:
                raise ValueError(
                    f"feeds[{index}]: duplicate url {redact(feed.url)!r} "
                    f"(already feeds[{seen[key]}])"
                )
            seen[key] = index
        return feeds

    @field_validator("max_interval_minutes")
    @classmethod
    def _above_the_minimum(cls, high: float, info: ValidationInfo) -> float:
        low = info.data.get("min_interval_minutes")
        if low is not None and low > high:
            raise ValueError(f"min_interval_minutes ({low}) is above max_interval_minutes ({high})")
        return high

    @field_validator("feeds")
    @classmethod
    def _ordered_bounds(cls, feeds: list[FeedConfig], info: ValidationInfo) -> list[FeedConfig]:
        """Each feed's min interval (its own or the global one) at most its max."""
        low = info.data.get("min_interval_minutes", 15.0)
        high = info.data.get("max_interval_minutes", 1440.0)
        problems = []
        for index, feed in enumerate(feeds):
            mine = (feed.min_interval_minutes or low, feed.max_interval_minutes or high)
            if (feed.min_interval_minutes or feed.max_interval_minutes) and mine[0] > mine[1]:
                problems.append(
                    f"feeds[{index}]: min_interval_minutes ({mine[0]}) is above "
                    f"max_interval_minutes ({mine[1]}) (feed {redact(feed.url)})"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return feeds

    @field_validator("users")
    @classmethod
    def _known_feeds(
        cls, users: tuple[UserConfig, ...], info: ValidationInfo
    ) -> tuple[UserConfig, ...]:
        """Every ``feeds`` entry names a configured feed; names are unique. Skipped when
        the feed list itself is invalid (reported on its own)."""
        feeds = info.data.get("feeds")
        if feeds is None:
            return users
        problems = check_users(users, [feed.url for feed in feeds])
        if problems:
            raise ValueError("\n".join(problems))
        return users

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
        """The User-Agent of a feed's requests: ``user_agent`` when config.toml sets it,
        else rssd's own with the number of users subscribed to the feed."""
        if "user_agent" in self.model_fields_set:
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


def load_config(path: Path, environ: Mapping[str, str] = os.environ) -> Config:
    """Read, parse and validate config.toml; raise ConfigError with every problem found.

    Blocking file I/O: the daemon calls it off its event loop."""
    try:
        text = read_config_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"cannot read: {exc}"]) from None
    return parse_config(text, path, environ)


def parse_config(text: str, path: Path, environ: Mapping[str, str] = os.environ) -> Config:
    """Validate TOML text; relative paths resolve against ``base_directory``."""
    try:
        raw = tomli.loads(text)
        secrets = secrets_directory(path, environ)
        config = Config.model_validate(raw, context={"base_dir": secrets})
    except tomli.TOMLDecodeError as exc:
        raise ConfigError(path, [f"TOML syntax error: {exc}"]) from None
    except RecursionError:  # tomli and pydantic recurse per nesting level
        raise ConfigError(path, ["TOML syntax error: arrays or tables nested too deeply"]) from None
    except ValidationError as exc:
        try:
            lines = _describe(exc, raw) + _duplicates_not_reported(exc, raw)
        except RecursionError:
            lines = ["a value is nested too deeply to describe"]
        raise ConfigError(path, lines) from None
    database = locate_database(config.database, path, environ)
    if database != config.database:
        config = config.model_copy(update={"database": database})
    if config.metrics_file is not None and not config.metrics_file.is_absolute():
        base = base_directory(path, environ)
        config = config.model_copy(update={"metrics_file": base / config.metrics_file})
    return _with_header_files(config, path, secrets)


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
        feeds.append(feed.model_copy(update={"headers": {**feed.headers, **extra}}))
    if errors:
        raise ConfigError(path, errors)
    return config.model_copy(update={"feeds": feeds})


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


def _duplicates_not_reported(exc: ValidationError, raw: Mapping[str, Any]) -> list[str]:
    """Duplicate URLs, when a mistake inside ``feeds`` kept the list's own check from
    running: every error is listed at once, not one after another fix."""
    if any(error["loc"] == ("feeds",) for error in exc.errors()):
        return []  # the list validator ran and reported them itself
    feeds = raw.get("feeds")
    if not isinstance(feeds, list):
        return []
    lines = []
    seen: dict[str, int] = {}
    for index, feed in enumerate(feeds):
        url = feed.get("url") if isinstance(feed, dict) else None
        if not isinstance(url, str):
            continue
        try:
            key = normalize_url(check_http_url(url))
        except (ValueError, TypeError, AttributeError):
            continue
        if key in seen:
            lines.append(f"feeds[{index}]: duplicate url {url!r} (already feeds[{seen[key]}])")
        else:
            seen[key] = index
    return lines


def _describe(exc: ValidationError, raw: Mapping[str, Any]) -> list[str]:
    """Turn pydantic's errors into ``feeds[3].intervl_minutes: unknown key`` lines."""
    lines = []
    for error in exc.errors():
        loc = error["loc"]
        key = _key_path(loc)
        feed = _feed_label(loc, raw)
        if error["type"] == "extra_forbidden":
            message = "unknown key" + _suggestion(loc)
        elif error["type"] == "missing":
            message = "required key is missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "value_error" and "\n" in message:  # several cross-checks
                lines.extend(message.splitlines())
                continue
            if (
                error["type"] != "value_error"
                and not isinstance(error.get("input"), dict | list)
                and "headers" not in loc  # a header value is usually a secret
                and loc[:1] != ("users",)  # so may be anything in a [[users]] table
            ):
                given = error["input"]  # masked before quoting: a quote ends a URL in text
                shown = repr(redact(given)) if isinstance(given, str) else redact(repr(given))
                message += f" (got {shown})"
        prefix = f"{key}: " if key and not message.startswith(f"{key}[") else ""
        lines.append(f"{prefix}{message}{feed}")
    return lines


def _key_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _feed_label(loc: Sequence[int | str], raw: Mapping[str, Any]) -> str:
    """`` (feed URL)`` or `` (user NAME)``: which table of the file the error is in."""
    if len(loc) < 2 or loc[0] not in ("feeds", "users") or not isinstance(loc[1], int):
        return ""
    tables = raw.get(loc[0])
    if (
        not isinstance(tables, list)
        or loc[1] >= len(tables)
        or not isinstance(tables[loc[1]], dict)
    ):
        return ""
    key, kind = ("url", "feed") if loc[0] == "feeds" else ("name", "user")
    label = tables[loc[1]].get(key)
    if not isinstance(label, str):
        return ""
    shown = redact(label)
    return f" ({kind} {shown if shown.isprintable() else repr(shown)})"


def _suggestion(loc: Sequence[int | str]) -> str:
    import difflib  # noqa: PLC0415 (only for a mistake: slow to import at every start-up)

    tables: dict[object, type[BaseModel]] = {
        "feeds": FeedConfig,
        "users": UserConfig,
        "webhooks": WebhooksConfig,
    }
    model = tables.get(loc[0], Config) if len(loc) > 1 else Config
    name = str(loc[-1])
    close = difflib.get_close_matches(name, list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
