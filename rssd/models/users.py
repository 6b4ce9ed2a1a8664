"""The ``[webhooks]`` table and the ``[[users]]`` tables of config.toml.

A webhook secret is held in ``WebhookSecret``, whose repr and str are redacted: a config
printed, logged or put in an error message never shows it. Plain dataclasses, built from
tables rssd/models/config_check.py has checked: a daemon whose config.toml is unchanged
since it was checked starts without importing pydantic.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from rssd.models.files import FileTooLarge, read_regular_file
from rssd.models.filters import Filters, Rule, parse_rule
from rssd.models.redact import redact
from rssd.models.tables import from_table
from rssd.models.urls import normalize_url

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


@dataclass(frozen=True)
class WebhooksConfig:
    """``[webhooks]``: how messages are sent to every user's endpoint (checked by
    rssd/models/config_check.py)."""

    timeout_seconds: float = 15.0
    retry_seconds: tuple[float, ...] = DEFAULT_RETRY_SECONDS
    allow_private_networks: bool = False

    @property
    def max_attempts(self) -> int:
        return len(self.retry_seconds) + 1


@dataclass(frozen=True)
class UserConfig:
    """One ``[[users]]`` table: an endpoint, its secret, its feeds and filters (checked by
    rssd/models/config_check.py)."""

    name: str
    webhook_url: str
    format: Format = "standard"
    #: Read from ``secret_file`` when that is set.
    secret: WebhookSecret | None = field(default=None, repr=False)
    secret_file: Path | None = None
    feeds: tuple[str, ...] = ()
    keep: tuple[Rule, ...] = ()
    block: tuple[Rule, ...] = ()
    notify_backlog: bool = False
    #: A story already announced to this user from another of their feeds within this
    #: many days is not announced again (0: never skip).
    dedupe_days: int = 7
    #: ``standard`` only: posts carry their content, tags, enclosures, updated_at.
    include_content: bool = False
    #: One message per period instead of one per fetch: "1h", "1d", "30m" or "08:00".
    digest: str | None = None
    #: The zone of a time-of-day digest (IANA name); UTC if unset.
    timezone: str | None = None

    @property
    def filters(self) -> Filters:
        return Filters(self.keep, self.block)

    @property
    def signing_secret(self) -> WebhookSecret:
        assert self.secret is not None  # config_check requires one for 'standard'
        return self.secret

    @property
    def token(self) -> ServiceToken | None:
        """The service's token (gotify, ntfy), if any."""
        return self.secret if isinstance(self.secret, ServiceToken) else None

    def secret_fingerprint(self) -> str:
        return self.secret.fingerprint() if self.secret is not None else ""

    def wants_all_feeds(self) -> bool:
        return ALL_FEEDS in self.feeds


def webhooks_from(table: Mapping[str, Any]) -> WebhooksConfig:
    """The ``[webhooks]`` table, checked, as the daemon holds it."""
    return from_table(WebhooksConfig, table)


def user_from(table: Mapping[str, Any], secrets: Path) -> UserConfig:
    """A checked ``[[users]]`` table as the daemon holds it: its secret parsed, or read
    from ``secret_file`` now (relative to ``secrets``), its filters compiled."""
    fmt = str(table.get("format", "standard"))
    user = from_table(
        UserConfig,
        table,
        webhook_url=str.strip,  # as check_http_url accepted it
        secret=lambda text: parse_secret(text, fmt),
        keep=_rules,
        block=_rules,
    )
    if user.secret_file is None:
        return user
    path = user.secret_file if user.secret_file.is_absolute() else secrets / user.secret_file
    return replace(user, secret=read_secret_file(path, fmt))


def _rules(values: list[str]) -> tuple[Rule, ...]:
    return tuple(parse_rule(value) for value in values)


def check_ntfy_topic(url: str) -> None:
    """An ntfy URL names its topic in its last path segment (``https://ntfy.sh/mytopic``)."""
    path = url.split("?", 1)[0].split("#", 1)[0].split("://", 1)[-1]
    if "/" not in path or not path.rsplit("/", 1)[1]:
        raise ValueError("format 'ntfy' needs the topic's URL, such as https://ntfy.sh/mytopic")


def read_secret_file(path: Path, fmt: str) -> WebhookSecret:
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


class _Subscriber(Protocol):
    """A user as the cross-checks see one: the checked table (config_check) or the
    built UserConfig."""

    @property
    def name(self) -> str: ...
    @property
    def feeds(self) -> tuple[str, ...]: ...


def check_users(users: Sequence[_Subscriber], feed_urls: list[str]) -> list[str]:
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
