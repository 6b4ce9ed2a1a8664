"""config.toml checked with pydantic: every mistake, each as a clear line.

Operators edit config.toml by hand on a server, so every error names the file, the key path
and the feed it belongs to, and unknown keys suggest the key that was probably meant.

These models only check. What the daemon holds is built from the same TOML tables by
rssd/models/config.py (plain dataclasses), so a config.toml that was checked before and has
not changed since starts the daemon without importing pydantic (about a third of its
start-up). tests/test_config_runtime.py holds each model's fields to its dataclass's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rssd.models.categories import normalize_category
from rssd.models.digests import parse_schedule
from rssd.models.filters import Rule, parse_rule
from rssd.models.headers import DEFAULT_USER_AGENT, auth_clash, check_headers
from rssd.models.location import DEFAULT_DATABASE, ConfigError, check_database
from rssd.models.redact import redact
from rssd.models.urls import check_http_url, normalize_url, shown_url
from rssd.models.users import (
    DEFAULT_RETRY_SECONDS,
    MAX_DEDUPE_DAYS,
    TOKEN_FORMATS,
    Format,
    WebhookSecret,
    check_ntfy_topic,
    check_users,
    parse_secret,
    read_secret_file,
)


def check_tables(raw: Mapping[str, Any], path: Path, secrets: Path) -> None:
    """Raise ConfigError listing every problem of config.toml's tables (``raw``, as TOML
    parsed them); ``secrets``: where relative secret files are."""
    try:
        ConfigModel.model_validate(raw, context={"base_dir": secrets})
    except RecursionError:  # pydantic recurses per nesting level
        raise ConfigError(path, ["TOML syntax error: arrays or tables nested too deeply"]) from None
    except ValidationError as exc:
        try:
            lines = _describe(exc, raw) + _duplicates_not_reported(exc, raw)
        except RecursionError:
            lines = ["a value is nested too deeply to describe"]
        raise ConfigError(path, lines) from None


# Upper bounds keep every value one the daemon can compute with (a timedelta, a SQLite
# integer, setitimer): a value that validates must be a value that runs.
Minutes = Annotated[int, Field(gt=0, le=525_600)]  # a year
Seconds = Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)]  # a day
Days = Annotated[int, Field(gt=0, le=36_500)]  # a century: "forever" in practice
#: Fractions allowed: a test farm polls every few seconds (0.05 = 3 s).
FractionalMinutes = Annotated[float, Field(gt=0, le=525_600, allow_inf_nan=False)]


def _secret(value: object, info: ValidationInfo) -> WebhookSecret:
    if isinstance(value, WebhookSecret):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string")  # no input echoed: it may be a secret
    return parse_secret(value, str(info.data.get("format", "standard")))


def _rule(value: object) -> Rule:
    if isinstance(value, Rule):
        return value
    if not isinstance(value, str):
        raise ValueError("a filter must be a string 'field=regex'")
    return parse_rule(value)


Secret = Annotated[WebhookSecret, PlainValidator(_secret)]
FilterRule = Annotated[Rule, PlainValidator(_rule)]
RetrySeconds = Annotated[float, Field(gt=0, le=86_400 * 7, allow_inf_nan=False)]


class WebhooksModel(BaseModel):
    """``[webhooks]``: how messages are sent to every user's endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    timeout_seconds: Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)] = 15.0
    retry_seconds: Annotated[tuple[RetrySeconds, ...], Field(max_length=50, strict=False)] = (
        DEFAULT_RETRY_SECONDS
    )
    allow_private_networks: bool = False


class UserModel(BaseModel):
    """One ``[[users]]`` table: an endpoint, its secret, its feeds and filters."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, arbitrary_types_allowed=True
    )

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")]
    webhook_url: str
    # Before ``secret``: the format says how the secret is read.
    format: Format = "standard"
    secret: Secret | None = Field(default=None, repr=False)
    secret_file: Annotated[Path, Field(strict=False)] | None = None
    feeds: Annotated[tuple[str, ...], Field(strict=False)] = ()
    keep: Annotated[tuple[FilterRule, ...], Field(strict=False)] = ()
    block: Annotated[tuple[FilterRule, ...], Field(strict=False)] = ()
    notify_backlog: bool = False
    #: A story already announced to this user from another of their feeds within this
    #: many days is not announced again (0: never skip).
    dedupe_days: Annotated[int, Field(ge=0, le=MAX_DEDUPE_DAYS)] = 7
    #: ``standard`` only: posts carry their content, tags, enclosures, updated_at.
    include_content: bool = False
    #: One message per period instead of one per fetch: "1h", "1d", "30m" or "08:00".
    digest: str | None = None
    #: The zone of a time-of-day digest (IANA name); UTC if unset.
    timezone: str | None = None

    @field_validator("webhook_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return check_http_url(value)

    @model_validator(mode="after")
    def _one_secret(self, info: ValidationInfo) -> UserModel:
        """Exactly one of ``secret`` / ``secret_file``; the file is read now, so a missing
        or unreadable one is a config error, not a delivery failure days later."""
        has_secret = self.secret is not None or self.secret_file is not None
        if self.secret is not None and self.secret_file is not None:
            raise ValueError("set exactly one of 'secret' and 'secret_file'")
        if not has_secret and (self.format == "standard" or TOKEN_FORMATS.get(self.format)):
            what = " (the application token)" if self.format == "gotify" else ""
            raise ValueError(f"set exactly one of 'secret' and 'secret_file'{what}")
        if self.format == "ntfy":
            check_ntfy_topic(self.webhook_url)
        if self.include_content and self.format != "standard":
            raise ValueError("include_content applies to format 'standard' only")
        if self.digest is not None:
            parse_schedule(self.digest, self.timezone)
        elif self.timezone is not None:
            raise ValueError('timezone applies to a time-of-day digest (digest = "08:00")')
        if self.secret_file is not None:
            base = (info.context or {}).get("base_dir")
            path = self.secret_file
            if not path.is_absolute() and isinstance(base, Path):
                path = base / path
            read_secret_file(path, self.format)  # the daemon reads it again: user_from
        return self


class FeedModel(BaseModel):
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
    def _one_authorization(self) -> FeedModel:
        problem = auth_clash(self.url, self.headers)
        if problem:
            raise ValueError(problem)
        return self


class ConfigModel(BaseModel):
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
    feeds: list[FeedModel] = Field(default_factory=list)
    webhooks: WebhooksModel = Field(default_factory=WebhooksModel)
    # After ``feeds``: the users' check reads the validated feed list.
    users: Annotated[tuple[UserModel, ...], Field(strict=False)] = ()

    @field_validator("database", mode="before")
    @classmethod
    def _database_names_a_file(cls, value: object) -> object:
        return check_database(value)

    @field_validator("feeds")
    @classmethod
    def _unique_urls(cls, feeds: list[FeedModel]) -> list[FeedModel]:
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
    def _ordered_bounds(cls, feeds: list[FeedModel], info: ValidationInfo) -> list[FeedModel]:
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
        cls, users: tuple[UserModel, ...], info: ValidationInfo
    ) -> tuple[UserModel, ...]:
        """Every ``feeds`` entry names a configured feed; names are unique. Skipped when
        the feed list itself is invalid (reported on its own)."""
        feeds = info.data.get("feeds")
        if feeds is None:
            return users
        problems = check_users(users, [feed.url for feed in feeds])
        if problems:
            raise ValueError("\n".join(problems))
        return users


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
        elif error["type"] == "model_type":  # pydantic would name its model class
            message = "must be a table"
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
    shown = shown_url(label) if kind == "feed" else redact(label)
    return f" ({kind} {shown if shown.isprintable() else repr(shown)})"


def _suggestion(loc: Sequence[int | str]) -> str:
    import difflib  # noqa: PLC0415 (only for a mistake: slow to import at every start-up)

    tables: dict[object, type[BaseModel]] = {
        "feeds": FeedModel,
        "users": UserModel,
        "webhooks": WebhooksModel,
    }
    model = tables.get(loc[0], ConfigModel) if len(loc) > 1 else ConfigModel
    name = str(loc[-1])
    close = difflib.get_close_matches(name, list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
