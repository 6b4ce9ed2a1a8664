"""``[webhooks]`` and ``[[users]]`` in config.toml; the keep/block filter functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from rssd.models.config import ConfigError, parse_config
from rssd.models.filters import Filters, parse_rule, passes
from rssd.models.users import DEFAULT_RETRY_SECONDS, WebhookSecret, user_feed_urls
from tests.support.commands import cli_sync

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FEED = "https://a.example/feed"
OTHER = "https://b.example/rss"


def config_toml(user: str, *, webhooks: str = "") -> str:
    return f'[[feeds]]\nurl = "{FEED}"\n[[feeds]]\nurl = "{OTHER}"\n{webhooks}\n[[users]]\n{user}\n'


def user_toml(**keys: str) -> str:
    base = {
        "name": '"alice"',
        "webhook_url": '"https://hooks.example/rssd"',
        "secret": f'"{SECRET}"',
        "feeds": f'["{FEED}"]',
    }
    base.update(keys)
    return "\n".join(f"{key} = {value}" for key, value in base.items() if value)


def errors_of(text: str, path: Path = Path("/srv/rssd/config.toml")) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, path)
    assert SECRET not in str(info.value)
    return info.value.errors


def test_defaults_and_a_valid_user(tmp_path: Path) -> None:
    config = parse_config(config_toml(user_toml()), tmp_path / "config.toml")
    assert config.webhooks.timeout_seconds == 15
    assert config.webhooks.retry_seconds == DEFAULT_RETRY_SECONDS
    assert config.webhooks.max_attempts == 10
    assert config.webhooks.allow_private_networks is False
    (user,) = config.users
    assert user.name == "alice"
    assert user.notify_backlog is False
    assert user.signing_secret == WebhookSecret.parse(SECRET)
    assert user_feed_urls(user, [FEED, OTHER]) == [FEED]


def test_a_file_without_users_has_none(tmp_path: Path) -> None:
    config = parse_config(f'[[feeds]]\nurl = "{FEED}"\n', tmp_path / "c.toml")
    assert config.users == ()


def test_star_subscribes_to_every_feed(tmp_path: Path) -> None:
    config = parse_config(config_toml(user_toml(feeds='["*"]')), tmp_path / "c.toml")
    assert user_feed_urls(config.users[0], [FEED, OTHER]) == [FEED, OTHER]


def test_the_secret_never_prints(tmp_path: Path) -> None:
    config = parse_config(config_toml(user_toml()), tmp_path / "c.toml")
    for text in (repr(config), str(config), repr(config.users[0]), str(config.users[0].secret)):
        assert SECRET not in text
        assert SECRET.removeprefix("whsec_") not in text
    assert "**" in repr(config.users[0].signing_secret)


def test_secret_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "alice.secret").write_text(SECRET + "\n")
    config = parse_config(
        config_toml(user_toml(secret="", secret_file='"alice.secret"')), tmp_path / "c.toml"
    )
    assert config.users[0].signing_secret == WebhookSecret.parse(SECRET)


def test_unreadable_secret_file(tmp_path: Path) -> None:
    """A directory: not a regular file (refused even for root, as the tests may run)."""
    errors = errors_of(config_toml(user_toml(secret="", secret_file=f'"{tmp_path}"')))
    assert errors == [
        f"users[0]: secret_file: cannot read {tmp_path}: not a regular file (user alice)"
    ]


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (
            user_toml(secret='"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"'),
            "users[0].secret: a webhook secret must start with 'whsec_' (user alice)",
        ),
        (
            user_toml(secret='"whsec_not*base64"'),
            "users[0].secret: a webhook secret must be 'whsec_' + base64 (user alice)",
        ),
        (
            user_toml(secret='"whsec_c2hvcnQ="'),
            "users[0].secret: a webhook secret must decode to at least 24 bytes (user alice)",
        ),
        (
            user_toml(secret=""),
            "users[0]: set exactly one of 'secret' and 'secret_file' (user alice)",
        ),
        (
            user_toml(secret_file='"/nonexistent/secret"'),
            "users[0]: set exactly one of 'secret' and 'secret_file' (user alice)",
        ),
        (
            user_toml(secret="", secret_file='"/nonexistent/secret"'),
            "users[0]: secret_file: cannot read /nonexistent/secret: No such file or directory "
            "(user alice)",
        ),
        (
            user_toml(feeds='["https://unknown.example/feed"]'),
            "users[0].feeds[0]: 'https://unknown.example/feed' is not the url of a [[feeds]] "
            'table (or "*" for every feed) (user alice)',  # the user by name, not index only
        ),
        (
            user_toml(keep='["title=(?i"]'),
            "users[0].keep[0]: filter 'title=(?i': bad regex: missing -, : or ) at position 3 "
            "(user alice)",
        ),
        (
            user_toml(block='["tags=x"]'),
            "users[0].block[0]: filter 'tags=x': unknown field 'tags' (one of title, "
            "url, author, content, category) (user alice)",
        ),
        (
            user_toml(keep='["python"]'),
            "users[0].keep[0]: filter 'python' must be field=regex, e.g. 'title=(?i)python' "
            "(user alice)",
        ),
        (
            user_toml(webhook_url='"ftp://hooks.example"'),
            "users[0].webhook_url: URL must start with http:// or https://, got "
            "'ftp://hooks.example' (user alice)",
        ),
        (
            user_toml(notify_backlog='"no"'),
            "users[0].notify_backlog: Input should be a valid boolean (user alice)",
        ),
        (
            user_toml(secrt='"x"'),
            "users[0].secrt: unknown key (did you mean 'secret'?) (user alice)",
        ),
    ],
)
def test_user_errors_name_the_key(user: str, expected: str) -> None:
    assert errors_of(config_toml(user)) == [expected]


def test_a_misplaced_secret_is_not_echoed() -> None:
    text = f'users = ["{SECRET}"]\n[[feeds]]\nurl = "{FEED}"\n'
    assert errors_of(text) == ["users[0]: must be a table"]


def test_duplicate_user_names() -> None:
    text = config_toml(user_toml()) + "[[users]]\n" + user_toml() + "\n"
    assert errors_of(text) == [
        "users[1].name: duplicate name 'alice' (already users[0]) (user alice)"
    ]


@pytest.mark.parametrize(
    ("webhooks", "expected"),
    [
        (
            "retry_seconds = [5, 0]",
            "webhooks.retry_seconds[1]: Input should be greater than 0 (got 0)",
        ),
        (
            "timeout_seconds = -1",
            "webhooks.timeout_seconds: Input should be greater than 0 (got -1)",
        ),
        (
            "allow_private_network = true",
            "webhooks.allow_private_network: unknown key (did you mean 'allow_private_networks'?)",
        ),
    ],
)
def test_webhooks_errors(webhooks: str, expected: str) -> None:
    assert errors_of(config_toml(user_toml(), webhooks=f"[webhooks]\n{webhooks}")) == [expected]


POST = {
    "title": "Python 3.14 released",
    "url": "https://ex.org/py",
    "author": "Guido",
    "summary": "sponsored by nobody",
    "content": None,
    "category": "Blogs / Linux",
}


@pytest.mark.parametrize(
    ("keep", "block", "expected"),
    [
        ((), (), True),
        (("title=(?i)python",), (), True),
        (("title=rust",), (), False),
        (("title=rust", "author=Guido"), (), True),  # any keep rule
        ((), ("title=(?i)sponsored",), True),
        ((), ("content=sponsored",), False),  # content searches the summary too
        (("title=Python",), ("url=/py$",), False),  # block wins over keep
        (("author=^$",), (), False),  # a missing field never matches
        (("content=nothing",), (), False),
        (("category=^Blogs",), (), True),  # the feed's category, "Blogs / Linux"
        ((), ("category=(?i)linux$",), False),
    ],
)
def test_filters(keep: tuple[str, ...], block: tuple[str, ...], expected: bool) -> None:
    assert passes(Filters.parse(keep, block), POST) is expected


def test_rule_text_round_trips() -> None:
    assert parse_rule("title=(?i)a=b").text == "title=(?i)a=b"


def test_check_config_shows_the_retry_span_and_each_users_filters(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[[feeds]]\nurl = "https://a.example/feed"\n'
        "[webhooks]\nretry_seconds = [5, 5, 5, 5]\n"
        f'[[users]]\nname = "alice"\nwebhook_url = "https://h.example/a"\nsecret = "{SECRET}"\n'
        'feeds = ["*"]\nkeep = ["title=(?i)python"]\nblock = ["title=sponsored"]\n'
    )
    result = cli_sync("check-config", "-c", config)
    assert result.code == 0, result.err
    assert "5 attempts over 20s," in result.out  # not "over 0.0 days"
    assert (
        "  alice -> https://h.example/a  (every feed; keep title=(?i)python; "
        "block title=sponsored)" in result.out
    )
