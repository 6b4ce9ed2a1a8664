"""config.toml: the pydantic models, the loader's messages, path resolution, check-config."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from rssd import cli
from rssd.models.config import (
    DEFAULT_USER_AGENT,
    Config,
    ConfigError,
    config_of,
    load_config,
    normalize_url,
    parse_config,
)
from rssd.models.location import fallback_database
from rssd.models.paths import resolve_config_path

REPO = Path(__file__).resolve().parents[1]


def feeds_toml(*urls: str) -> str:
    return "".join(f'[[feeds]]\nurl = "{url}"\n' for url in urls)


def errors_of(text: str, path: Path = Path("/srv/rssd/config.toml")) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, path)
    assert info.value.path == path
    assert info.value.errors, "a ConfigError always says what is wrong"
    # The exception's text names the file on every line, for logs and tracebacks.
    assert all(line.startswith(f"{path}: ") for line in str(info.value).splitlines())
    return info.value.errors


# --- valid files -----------------------------------------------------------------------


def test_a_file_with_only_feeds_tables_is_valid_and_gets_every_default(tmp_path: Path) -> None:
    config = parse_config(
        feeds_toml("https://example.org/feed", "http://example.net/rss"),
        tmp_path / "config.toml",
    )
    assert [feed.url for feed in config.feeds] == [
        "https://example.org/feed",
        "http://example.net/rss",
    ]
    assert config.database == tmp_path.resolve() / "rssd.sqlite3"
    assert (config.max_concurrency, config.max_per_host) == (20, 2)
    assert (config.interval_minutes, config.timeout_seconds) == (60, 30.0)
    assert config.max_body_mb == 10.0
    assert config.max_body_bytes == 10 * 1024 * 1024
    assert config.max_redirects == 5
    assert config.user_agent == DEFAULT_USER_AGENT
    assert "rssd/" in config.user_agent
    assert config.log_level == "info"
    assert config.keep_fetch_jobs_days == 90
    assert config.shutdown_grace_seconds == 10.0
    assert config.sanitize_html is True
    feed = config.feeds[0]
    assert (feed.name, feed.interval_minutes, feed.timeout_seconds, feed.enabled) == (
        None,
        None,
        None,
        True,
    )


def test_an_empty_file_is_a_valid_config_with_no_feeds(tmp_path: Path) -> None:
    assert parse_config("", tmp_path / "config.toml").feeds == []


def test_feed_settings_override_the_top_level_defaults(tmp_path: Path) -> None:
    config = parse_config(
        "interval_minutes = 15\ntimeout_seconds = 5\n"
        '[[feeds]]\nurl = "http://a.example/1"\n'
        '[[feeds]]\nurl = "http://a.example/2"\ninterval_minutes = 240\ntimeout_seconds = 2.5\n'
        'name = "Two"\nenabled = false\n',
        tmp_path / "config.toml",
    )
    first, second = config.feeds
    assert (config.feed_interval(first), config.feed_timeout(first)) == (15, 5.0)
    assert (config.feed_interval(second), config.feed_timeout(second)) == (240, 2.5)
    assert (second.name, second.enabled) == ("Two", False)


@pytest.mark.parametrize(
    ("config_at", "database", "expected"),
    [
        ("config.toml", "rssd.sqlite3", "rssd.sqlite3"),
        ("etc/config.toml", "rssd.sqlite3", "etc/rssd.sqlite3"),
        ("etc/config.toml", "../var/db.sqlite3", "etc/../var/db.sqlite3"),
        ("etc/config.toml", "state/db.sqlite3", "etc/state/db.sqlite3"),
    ],
)
def test_a_relative_database_resolves_against_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_at: str, database: str, expected: str
) -> None:
    # The process runs somewhere else entirely: the cwd must not matter.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = tmp_path / config_at
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'database = "{database}"\n')
    config = load_config(path)
    assert isinstance(config.database, Path)
    assert config.database.is_absolute()
    assert config.database == tmp_path.resolve() / expected


def test_a_relative_config_path_still_gives_an_absolute_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "config.toml").write_text('database = "db.sqlite3"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("conf/config.toml"))
    assert config.database == tmp_path.resolve() / "conf" / "db.sqlite3"


def test_an_absolute_database_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "var" / "lib" / "rssd.sqlite3"
    config = parse_config(f'database = "{target}"\n', tmp_path / "etc" / "config.toml")
    assert config.database == target


def test_the_shipped_config_validates() -> None:
    config = load_config(REPO / "config.toml")
    assert config.feeds, "the shipped config lists a few real feeds"
    assert all(feed.url.startswith(("http://", "https://")) for feed in config.feeds)
    # "keeps its database beside itself"
    assert isinstance(config.database, Path)
    assert config.database.parent == REPO.resolve()


# --- every error names the key path and the feed ---------------------------------------

FOUR_FEEDS = feeds_toml("http://a.example/0", "http://a.example/1", "http://a.example/2")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            FOUR_FEEDS + '[[feeds]]\nurl = "http://a.example/3"\nintervl_minutes = 5\n',
            "feeds[3].intervl_minutes: unknown key (did you mean 'interval_minutes'?)"
            " (feed http://a.example/3)",
            id="unknown-feed-key-with-suggestion",
        ),
        pytest.param(
            "max_concurency = 4\n",
            "max_concurency: unknown key (did you mean 'max_concurrency'?)",
            id="unknown-top-level-key-with-suggestion",
        ),
        pytest.param(
            "colour = 'blue'\n",
            "colour: unknown key",
            id="unknown-top-level-key-without-suggestion",
        ),
        pytest.param(
            'max_concurrency = "lots"\n',
            "max_concurrency: Input should be a valid integer",
            id="bad-type-top-level",
        ),
        pytest.param(
            '[[feeds]]\nurl = "http://a.example/x"\ntimeout_seconds = "soon"\n',
            "feeds[0].timeout_seconds: Input should be a valid number",
            id="bad-type-in-feed",
        ),
        pytest.param(
            "[[feeds]]\nurl = 3\n",
            "feeds[0].url: Input should be a valid string (got 3)",
            id="url-not-a-string",
        ),
        pytest.param(
            'log_level = "verbose"\n',
            "log_level: Input should be 'debug', 'info', 'warning' or 'error' (got 'verbose')",
            id="bad-log-level",
        ),
        pytest.param(
            "feeds = 3\n",
            "feeds: Input should be a valid list",
            id="feeds-not-a-list",
        ),
        pytest.param(
            '[feeds]\nurl = "http://a.example/"\n',
            "feeds: Input should be a valid list",
            id="feeds-table-instead-of-array",
        ),
        pytest.param(
            feeds_toml("http://a.example/x", "http://b.example/y", "http://a.example/x"),
            "feeds[2]: duplicate url 'http://a.example/x' (already feeds[0])",
            id="duplicate-url",
        ),
        pytest.param(
            feeds_toml("https://Example.ORG/feed", "https://example.org/feed"),
            "feeds[1]: duplicate url 'https://example.org/feed' (already feeds[0])",
            id="duplicate-url-differing-in-host-case",
        ),
        pytest.param(
            feeds_toml("HTTP://example.org/feed", "http://example.org/feed"),
            "feeds[1]: duplicate url 'http://example.org/feed' (already feeds[0])",
            id="duplicate-url-differing-in-scheme-case",
        ),
        pytest.param(
            feeds_toml("ftp://example.org/feed"),
            "feeds[0].url: URL must start with http:// or https://, got 'ftp://example.org/feed'"
            " (feed ftp://example.org/feed)",
            id="ftp-url",
        ),
        pytest.param(
            feeds_toml("file:///etc/passwd"),
            "feeds[0].url: URL must start with http:// or https://",
            id="file-url",
        ),
        pytest.param(
            feeds_toml("example.org/feed"),
            "feeds[0].url: URL must start with http:// or https://",
            id="url-without-scheme",
        ),
        pytest.param(
            feeds_toml("http:///feed"),
            "feeds[0].url: URL has no host: 'http:///feed' (feed http:///feed)",
            id="url-without-host",
        ),
        pytest.param(
            feeds_toml("https://alice:s3cr@t?tail@feeds.example/feed"),
            "feeds[0].url: URL has credentials and another '@' after them: percent-encode a "
            "password's '@', '/', '?' and '#', and write an '@' of the path as %40: "
            "'https://***@feeds.example/feed' (feed https://***@feeds.example/feed)",
            id="url-password-with-at-then-question-mark",
        ),
        pytest.param(
            feeds_toml("http://[::1"),
            "feeds[0].url: not a valid URL",
            id="unparseable-url",
        ),
        pytest.param(
            '[[feeds]]\nurl = "http://a.example/x"\ninterval_minutes = -5\n',
            "feeds[0].interval_minutes: Input should be greater than 0 (got -5)"
            " (feed http://a.example/x)",
            id="negative-feed-interval",
        ),
        pytest.param(
            '[[feeds]]\nurl = "http://a.example/x"\ninterval_minutes = 0\n',
            "feeds[0].interval_minutes: Input should be greater than 0 (got 0)",
            id="zero-feed-interval",
        ),
        pytest.param(
            "interval_minutes = -1\n",
            "interval_minutes: Input should be greater than 0 (got -1)",
            id="negative-default-interval",
        ),
        pytest.param(
            "interval_minutes = 0\n",
            "interval_minutes: Input should be greater than 0 (got 0)",
            id="zero-default-interval",
        ),
        pytest.param(
            "interval_minutes = 1.5\n",
            "interval_minutes: Input should be a valid integer (got 1.5)",
            id="fractional-interval",
        ),
        pytest.param(
            "timeout_seconds = 0\n",
            "timeout_seconds: Input should be greater than 0 (got 0)",
            id="zero-timeout",
        ),
        pytest.param(
            "max_concurrency = 0\n",
            "max_concurrency: Input should be greater than 0 (got 0)",
            id="zero-concurrency",
        ),
        pytest.param(
            '[[feeds]]\nname = "no url"\n',
            "feeds[0].url: required key is missing",
            id="missing-url",
        ),
    ],
)
def test_each_config_error_names_the_key_path_and_the_feed(text: str, expected: str) -> None:
    errors = errors_of(text)
    assert any(line.startswith(expected) for line in errors), errors


def test_every_problem_is_reported_not_just_the_first() -> None:
    errors = errors_of(
        "max_concurency = 4\n"
        '[[feeds]]\nurl = "ftp://a.example/"\n'
        '[[feeds]]\nurl = "http://b.example/"\nintervl_minutes = 5\n'
    )
    assert len(errors) == 3, errors
    assert any(line.startswith("max_concurency: unknown key") for line in errors)
    assert any(line.startswith("feeds[0].url: URL must start with http") for line in errors)
    assert any(
        line.startswith("feeds[1].intervl_minutes: unknown key")
        and line.endswith("(feed http://b.example/)")
        for line in errors
    )


def test_a_duplicate_url_is_reported_alongside_other_errors() -> None:
    errors = errors_of(
        "max_concurency = 4\n" + feeds_toml("http://a.example/x", "http://a.example/x")
    )
    assert any(line.startswith("max_concurency: unknown key") for line in errors), errors
    assert any("duplicate url" in line for line in errors), errors


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a = 1\nb = = 2\n", 2),
        ('database = "x.sqlite3"\n\n\n[[feeds]\nurl = "http://a.example/"\n', 4),
        ('[[feeds]]\nurl = "http://a.example/\n', 2),
    ],
    ids=["double-equals", "unclosed-table-header", "unclosed-string"],
)
def test_a_toml_syntax_error_names_its_line(text: str, line: int) -> None:
    (error,) = errors_of(text)
    assert error.startswith("TOML syntax error: ")
    assert f"line {line}" in error


@pytest.mark.parametrize(
    "text",
    [
        'user_agent = "\\e"\n',
        'user_agent = "\\x41"\n',
        '[[feeds]]\nurl = "http://a.example/"\nheaders = {\n  X-A = "b",\n}\n',
    ],
    ids=["escape-e", "escape-x", "multi-line-inline-table"],
)
def test_toml_1_1_syntax_is_refused(text: str) -> None:
    """config.toml is TOML 1.0, as the standard library's tomllib and tomlkit (which edits
    it) read it: a tomli that read TOML 1.1 would take what a rollback then refuses."""
    (error,) = errors_of(text)
    assert error.startswith("TOML syntax error: ")


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == ["file not found"]
    assert str(info.value) == f"{path}: file not found"


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"\xff\xfe not utf-8", "cannot read"), (None, "cannot read")],
    ids=["not-utf8", "a-directory"],
)
def test_an_unreadable_file_is_a_config_error(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "config.toml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (error,) = info.value.errors
    assert error.startswith(expected)


@pytest.mark.parametrize(
    "text",
    [
        "interval_minutes = true\n",
        "timeout_seconds = true\n",
        "max_concurrency = true\n",
        'interval_minutes = "5"\n',
        "sanitize_html = 1\n",
        '[[feeds]]\nurl = "http://a.example/"\nenabled = "no"\n',
    ],
    ids=[
        "bool-interval",
        "bool-timeout",
        "bool-concurrency",
        "str-interval",
        "int-bool",
        "str-bool",
    ],
)
def test_a_value_of_the_wrong_toml_type_is_refused_not_coerced(text: str) -> None:
    errors_of(text)


def test_an_empty_database_path_is_refused() -> None:
    (error,) = errors_of('database = ""\n')
    assert error.startswith("database: ")


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("postgresql://rssd@db.example/rssd", "postgresql://rssd@db.example/rssd"),
        ("postgresql://rssd:pw@db.example:5433/rssd", "postgresql://rssd:***@db.example:5433/rssd"),
        (
            "postgresql://rssd@db.example/rssd?password=pw",
            "postgresql://rssd@db.example/rssd?password=***",
        ),
        (
            "postgres://db.example/rssd?sslmode=require",
            "postgres://db.example/rssd?sslmode=require",
        ),
    ],
)
def test_a_postgresql_url_is_kept_as_given_and_shown_without_its_password(
    value: str, label: str
) -> None:
    config = parse_config(f'database = "{value}"\n', Path("/srv/rssd/config.toml"))
    assert config.database == config.database_url == value
    assert config.database_path is None
    assert config.database_label == label


@pytest.mark.parametrize(
    "value", ["mysql://db.example/rssd", "sqlite:///x.db", "https://db.example/"]
)
def test_urls_other_than_postgresql_are_refused(value: str) -> None:
    (error,) = errors_of(f'database = "{value}"\n')
    assert error.startswith("database: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('database = "db.sqlite3"\n', "{base}/db.sqlite3"),
        ('database = "/var/lib/rssd/db.sqlite3"\n', "/var/lib/rssd/db.sqlite3"),
        ('database = "postgresql://rssd:pw@db.example/rssd"\n', "postgresql://rssd:pw@db.example/rssd"),
        ("", "{base}/rssd.sqlite3"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("broken", ["", "max_concurency = 3\n"])
@pytest.mark.parametrize("state", [None, "/var/lib/rssd"])
def test_a_broken_config_names_the_database_a_valid_one_would(
    tmp_path: Path, text: str, expected: str, broken: str, state: str | None
) -> None:
    """``rssd status`` beside a broken config.toml reads the database the file names, found
    as a valid file's would be ($STATE_DIRECTORY, the file's folder; a URL as it is)."""
    path = tmp_path / "etc" / "config.toml"
    path.parent.mkdir()
    path.write_text(text + broken)
    environ = {"STATE_DIRECTORY": state} if state else {}
    want = expected.format(base=state or path.parent.resolve())
    located = fallback_database(path, environ)
    assert str(located) == want
    assert isinstance(located, str) == want.startswith("postgresql://")
    if not broken:
        assert located == load_config(path, environ).database


@pytest.mark.parametrize(
    "text",
    [
        'database = ""\n',
        'database = "."\n',
        'database = "mysql://db.example/rssd"\n',
        "database = 5\n",
        "[[feeds]\n",  # not TOML
    ],
)
def test_a_database_no_valid_config_could_name_falls_back_to_the_default(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    assert fallback_database(path, {}) == tmp_path.resolve() / "rssd.sqlite3"


# --- helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("HTTPS://Example.ORG/Feed", "https://example.org/Feed"),
        ("http://example.org/a?B=C", "http://example.org/a?B=C"),
        ("  http://EXAMPLE.org/x  ", "http://example.org/x"),
    ],
)
def test_normalize_url_lowers_scheme_and_host_only(url: str, normal: str) -> None:
    assert normalize_url(url) == normal


def test_feed_urls_are_stripped_of_surrounding_blanks() -> None:
    config = config_of({"feeds": [{"url": "  https://example.org/feed "}]})
    assert config.feeds[0].url == "https://example.org/feed"


def test_configs_are_frozen() -> None:
    config = Config()
    with pytest.raises(FrozenInstanceError):
        config.max_concurrency = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("cli_value", "environ", "expected"),
    [
        ("/etc/a.toml", {"RSSD_CONFIG": "/etc/b.toml"}, Path("/etc/a.toml")),
        ("rel/a.toml", {}, Path("rel/a.toml")),
        (None, {"RSSD_CONFIG": "/etc/b.toml"}, Path("/etc/b.toml")),
        (None, {"RSSD_CONFIG": ""}, Path("config.toml")),
        (None, {}, Path("config.toml")),
        ("", {"RSSD_CONFIG": "/etc/b.toml"}, Path("/etc/b.toml")),
    ],
)
def test_resolve_config_path_prefers_flag_then_env_then_cwd(
    cli_value: str | None, environ: dict[str, str], expected: Path
) -> None:
    assert resolve_config_path(cli_value, environ) == expected


# --- rssd check-config, in process -----------------------------------------------------


def test_check_config_prints_a_summary_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        'database = "data/feeds.sqlite3"\nmax_concurrency = 7\n'
        '[[feeds]]\nurl = "https://example.org/feed"\nname = "Example"\n'
        '[[feeds]]\nurl = "https://example.net/rss"\nenabled = false\ninterval_minutes = 5\n'
    )
    assert cli.main(["check-config", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert str(tmp_path.resolve() / "data" / "feeds.sqlite3") in out
    assert "feeds:     2 (1 enabled)" in out
    assert "max_concurrency=7" in out
    assert "https://example.org/feed" in out
    assert "Example" in out
    assert "https://example.net/rss" in out
    assert "(disabled)" in out
    assert len(out.splitlines()) < 25, "one screen"


def test_check_config_prints_every_error_on_stderr_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        'max_concurency = 4\n[[feeds]]\nurl = "http://a.example/"\nintervl_minutes = 5\n'
    )
    assert cli.main(["check-config", "-c", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 2
    assert f"{path}: max_concurency: unknown key (did you mean 'max_concurrency'?)" in lines
    assert (
        f"{path}: feeds[0].intervl_minutes: unknown key (did you mean 'interval_minutes'?)"
        " (feed http://a.example/)"
    ) in lines


def test_check_config_on_a_missing_file_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "missing.toml"
    assert cli.main(["check-config", "-c", str(path)]) == 1
    assert capsys.readouterr().err == f"{path}: file not found\n"


def test_check_config_on_the_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", "-c", str(REPO / "config.toml")]) == 0
    assert "feeds:" in capsys.readouterr().out


# --- adaptive polling and politeness (issue 24) ----------------------------------------


def test_polling_bounds_and_the_host_gap_have_defaults_and_per_feed_overrides(
    tmp_path: Path,
) -> None:
    text = (
        "min_interval_minutes = 5\nhost_min_gap_seconds = 2.5\n"
        + feeds_toml("https://a.example/feed")
        + '[[feeds]]\nurl = "https://b.example/feed"\nmax_interval_minutes = 0.5\n'
        + "min_interval_minutes = 0.05\n"
    )
    config = parse_config(text, tmp_path / "config.toml")
    assert config.host_min_gap_seconds == 2.5
    assert [config.feed_bounds(feed) for feed in config.feeds] == [(5, 1440), (0.05, 0.5)]
    assert parse_config("", tmp_path / "config.toml").host_min_gap_seconds == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("min_interval_minutes = 60\nmax_interval_minutes = 30\n", "is above"),
        (
            'min_interval_minutes = 5\nmax_interval_minutes = 10\n[[feeds]]\nurl = "https://a.example/f"\n'
            "min_interval_minutes = 20\n",
            "feeds[0]: min_interval_minutes (20.0) is above max_interval_minutes (10.0)",
        ),
        ("min_interval_minutes = 0\n", "min_interval_minutes: Input should be greater than 0"),
        ("host_min_gap_seconds = -1\n", "host_min_gap_seconds: Input should be greater"),
        ('host_min_gap_seconds = "1"\n', "host_min_gap_seconds"),
    ],
)
def test_polling_bounds_are_checked(text: str, expected: str) -> None:
    assert any(expected in line for line in errors_of(text)), errors_of(text)


def test_the_default_user_agent_counts_subscribers_and_a_configured_one_stands(
    tmp_path: Path,
) -> None:
    default = parse_config("", tmp_path / "config.toml")
    assert default.agent_for(2).endswith("; 2 subscribers)")
    assert default.agent_for(1).endswith("; 1 subscriber)")
    own = parse_config('user_agent = "Me/1"\n', tmp_path / "config.toml")
    assert own.agent_for(2) == "Me/1"


def test_check_config_describes_the_polling(tmp_path: Path) -> None:
    from rssd.commands.check_config import describe_config  # noqa: PLC0415

    text = (
        "host_min_gap_seconds = 2\n"
        + feeds_toml("https://a.example/f")
        + '[[feeds]]\nurl = "https://b.example/f"\ninterval_minutes = 30\n'
    )
    path = tmp_path / "config.toml"
    lines = describe_config(path, parse_config(text, path)).splitlines()
    assert any(line.endswith("host_gap=2s") for line in lines), lines
    assert any("by posting rate, 15-1440 min, starting at 60 min" in line for line in lines)
    assert any(
        line.strip().startswith("https://a.example/f  adaptive 15-1440 min") for line in lines
    )
    assert any(line.strip().startswith("https://b.example/f  every   30 min") for line in lines)
