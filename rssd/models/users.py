"""The ``[webhooks]`` table and the ``[[users]]`` tables of config.toml.

A webhook secret is held in ``WebhookSecret``, whose repr and str are redacted: a config
printed, logged or put in an error message never shows it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rssd.models.digests import parse_schedule
from rssd.models.files import FileTooLarge, read_regular_file
from rssd.models.filters import Filters, Rule, parse_rule
from rssd.models.redact import redact
from rssd.models.urls import check_http_url, normalize_url

SECRET_PREFIX = "whsec_"
#: Standard Webhooks' default schedule: the waits before attempts 2..10, about 3 days in all.
DEFAULT_RETRY_SECONDS = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
ALL_FEEDS = "*"
MAX_DEDUPE_DAYS = 365
#: A secret file holds one line; anything bigger is not a secret but a wrong path.
MAX_SECRET_FILE_BYTES = 4096


class WebhookSecret:
    """A ``whsec_`` secret: the decoded key for signing, never shown by repr or str."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def parse(cls, text: str) -> WebhookSecret:
        """``whsec_`` + base64 of at least 24 bytes. Errors never quote the text."""
        text = text.strip()
        if not text.startswith(SECRET_PREFIX):
            raise ValueError(f"a webhook secret must start with {SECRET_PREFIX!r}")
        try:
            key = base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"a webhook secret must be {SECRET_PREFIX!r} + base64") from None
        if len(key) < 24:
            raise ValueError("a webhook secret must decode to at least 24 bytes")
        return cls(key)

    def reveal(self) -> bytes:
        """The HMAC key. Only the signer calls this."""
        return self._key

    def fingerprint(self) -> str:
        """A one-way digest: tells a changed secret from the same one, reveals nothing."""
        return hashlib.sha256(b"rssd-secret-fingerprint:" + self._key).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WebhookSecret) and other._key == self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __repr__(self) -> str:
        return "WebhookSecret('**********')"

    __str__ = __repr__


class ServiceToken(WebhookSecret):
    """A service's own credential (a Gotify application token, an ntfy access token): sent
    as the service asks, never signed with, never shown by repr or str."""

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> ServiceToken:
        """Printable ASCII without spaces, as both services issue them. Errors never quote it."""
        text = text.strip()
        if not text:
            raise ValueError("a token must not be empty")
        if len(text) > 512 or not all("!" <= ch <= "~" for ch in text):
            raise ValueError("a token must be printable ASCII without spaces (at most 512)")
        return cls(text.encode("ascii"))

    def text(self) -> str:
        """The token for the request header. Only the sender calls this."""
        return self.reveal().decode("ascii")

    def __repr__(self) -> str:
        return "ServiceToken('**********')"

    __str__ = __repr__


#: What a user's messages look like on the wire (rssd/webhooks/formats.py builds them).
Format = Literal["standard", "slack", "discord", "ntfy", "gotify"]
#: Formats whose ``secret`` is a token of the service's rather than a ``whsec_`` key;
#: the value says whether one is required. Slack's and Discord's token is the last part
#: of their webhook URL: given as a secret, it is appended to ``webhook_url``, so the URL
#: in config.toml holds no secret.
TOKEN_FORMATS = {"gotify": True, "ntfy": False, "slack": False, "discord": False}


def parse_secret(text: str, fmt: str) -> WebhookSecret:
    """A ``secret`` (or ``secret_file``'s line) as the user's format reads it."""
    return ServiceToken.parse(text) if fmt in TOKEN_FORMATS else WebhookSecret.parse(text)


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


class WebhooksConfig(BaseModel):
    """``[webhooks]``: how messages are sent to every user's endpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    timeout_seconds: Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)] = 15.0
    retry_seconds: Annotated[tuple[RetrySeconds, ...], Field(max_length=50, strict=False)] = (
        DEFAULT_RETRY_SECONDS
    )
    allow_private_networks: bool = False

    @property
    def max_attempts(self) -> int:
        return len(self.retry_seconds) + 1


class UserConfig(BaseModel):
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
    def _one_secret(self, info: ValidationInfo) -> UserConfig:
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
            secret = _read_secret_file(path, self.format)
            object.__setattr__(self, "secret", secret)
        return self

    @property
    def filters(self) -> Filters:
        return Filters(self.keep, self.block)

    @property
    def signing_secret(self) -> WebhookSecret:
        assert self.secret is not None  # guaranteed by _one_secret for 'standard'
        return self.secret

    @property
    def token(self) -> ServiceToken | None:
        """The service's token (gotify, ntfy), if any."""
        return self.secret if isinstance(self.secret, ServiceToken) else None

    def secret_fingerprint(self) -> str:
        return self.secret.fingerprint() if self.secret is not None else ""

    def wants_all_feeds(self) -> bool:
        return ALL_FEEDS in self.feeds


def check_ntfy_topic(url: str) -> None:
    """An ntfy URL names its topic in its last path segment (``https://ntfy.sh/mytopic``)."""
    path = url.split("?", 1)[0].split("#", 1)[0].split("://", 1)[-1]
    if "/" not in path or not path.rsplit("/", 1)[1]:
        raise ValueError("format 'ntfy' needs the topic's URL, such as https://ntfy.sh/mytopic")


def _read_secret_file(path: Path, fmt: str) -> WebhookSecret:
    try:
        data = read_regular_file(path, MAX_SECRET_FILE_BYTES)
    except FileTooLarge:
        raise ValueError(f"secret_file: {path} is too big to hold a secret") from None
    except OSError as exc:
        raise ValueError(f"secret_file: cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"secret_file: {path} is not a text secret") from None
    try:
        return parse_secret(text, fmt)
    except ValueError as exc:
        raise ValueError(f"secret_file: {path}: {exc}") from None


def check_users(users: tuple[UserConfig, ...], feed_urls: list[str]) -> list[str]:
    """Cross-checks over the whole config (pure): unique names, known feed URLs."""
    known = {normalize_url(url) for url in feed_urls}
    problems: list[str] = []
    names: dict[str, int] = {}
    for index, user in enumerate(users):
        if user.name in names:
            problems.append(
                f"users[{index}].name: duplicate name {user.name!r} "
                f"(already users[{names[user.name]}]) (user {user.name})"
            )
        names.setdefault(user.name, index)
        for position, url in enumerate(user.feeds):
            if url != ALL_FEEDS and normalize_url(url) not in known:
                problems.append(
                    f"users[{index}].feeds[{position}]: {redact(url)!r} is not the url of a "
                    f'[[feeds]] table (or "*" for every feed) (user {user.name})'
                )
    return problems


def user_feed_urls(user: UserConfig, feed_urls: list[str]) -> list[str]:
    """The configured feed URLs a user subscribes to, as spelled in ``[[feeds]]``."""
    if user.wants_all_feeds():
        return list(feed_urls)
    wanted = {normalize_url(url) for url in user.feeds}
    return [url for url in feed_urls if normalize_url(url) in wanted]
