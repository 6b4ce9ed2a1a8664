"""Credentials (issue #10, item 6): URL passwords and header secrets work, and appear in no
log line, command output, error message or stored post. Every output path is checked
against a real run over a loopback server that demands them."""

from __future__ import annotations

import base64
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from aiohttp import web

from rssd.models.config import ConfigError, load_config
from rssd.models.redact import (
    host_only,
    redact,
    redact_endpoint,
    same_origin,
    strip_userinfo,
    with_credentials,
)
from tests.conftest import FeedServer, rss
from tests.support.commands import cli, cli_sync
from tests.support.config import write_config
from tests.test_run_once import run_once

PASSWORD = "s3cret-pw"
TOKEN = "tok-9f8e7d"
FILE_TOKEN = "file-token-5a4b"
SECRETS = (PASSWORD, TOKEN, FILE_TOKEN)
WHSEC = "whsec_" + base64.b64encode(b"k" * 32).decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://alice:s3cret@host/feed", "https://alice:***@host/feed"),
        ("http://token@host/x", "http://***@host/x"),
        ("GET http://a:b@h/x failed; retry https://c:d@e/", "GET http://a:***@h/x failed; retry https://c:***@e/"),
        ("http://a:p@ss@h/x", "http://a:***@h/x"),  # an unescaped @ in the password
        ("http://h/path@x", "http://h/path@x"),  # @ after the host: not credentials
        ("mailto:a@b.example", "mailto:a@b.example"),
        ("no url at all", "no url at all"),
    ],
)  # fmt: skip
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),  # the user name stays
        ("postgresql://u@h/db?password=x", "postgresql://u@h/db?password=***"),
        ("postgresql://h/db?sslmode=require&PASSWORD=x&x=1", "postgresql://h/db?sslmode=require&PASSWORD=***&x=1"),
        ("postgresql://u:a@h/db?password=b", "postgresql://u:***@h/db?password=***"),
        ("host=h user=u password=x dbname=d", "host=h user=u password=*** dbname=d"),
        ("password=x", "password=***"),
        ("postgresql://h/db?passwords=x&mypassword=y", "postgresql://h/db?passwords=x&mypassword=y"),
        ("postgresql://h/db?sslmode=require", "postgresql://h/db?sslmode=require"),
    ],
)  # fmt: skip
def test_redact_a_database_url(text: str, expected: str) -> None:
    assert redact(text, keep_user=True) == expected


@pytest.mark.parametrize(
    ("message", "url", "expected"),
    [
        ('bad "hunter2" here', "postgresql://u:hunter2@h/db", 'bad "***" here'),
        ('bad "hunter2" here', "postgresql://u@h/db?password=hunter2", 'bad "***" here'),
        ("nothing to hide", "postgresql://u@h/db", "nothing to hide"),
    ],
)
def test_redact_masks_a_urls_passwords_quoted_out_of_url_form(
    message: str, url: str, expected: str
) -> None:
    assert redact(message, keep_user=True, secrets_of=url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/feed",
        "HTTP://Example.ORG:80/a%2Fb/../c?x=1&y=@z#frag",
        "https://h/p@ath/feed.xml",
        " http://h/x ",
    ],
)
def test_a_url_without_credentials_is_unchanged_so_post_ids_stay(url: str) -> None:
    assert strip_userinfo(url) is url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hooks.slack.com/services/T1/B2/s3cret", "https://hooks.slack.com/***"),
        ("https://push.example?token=s3cret", "https://push.example/***"),
        ("https://push.example:8443?token=s3cret", "https://push.example:8443/***"),
        ("https://hook.example#s3cret", "https://hook.example/***"),
        ("https://alice:s3cret@hook.example?x=1", "https://hook.example/***"),
        ("https://hook.example?next=a@evil.example/", "https://hook.example/***"),
        ("https://ntfy.sh/s3cret-topic", "https://ntfy.sh/***"),
    ],
)
def test_a_token_endpoint_shows_its_scheme_and_host_only(url: str, expected: str) -> None:
    """``rssd users`` and a webhook request's repr: Slack's, Discord's, Gotify's and
    ntfy's URLs carry their secret in the path, the query or the topic; whatever follows
    the host (a path, or at once a query or a fragment) is hidden, and a ``@`` in a query
    does not pass for the end of a user name."""
    assert redact_endpoint(url, "slack") == host_only(url) == expected


def test_with_credentials_only_on_the_same_host() -> None:
    origin = "https://alice:pw@blog.example/"
    assert (
        with_credentials("https://blog.example/feed", origin)
        == "https://alice:pw@blog.example/feed"
    )
    assert with_credentials("https://cdn.example/feed", origin) == "https://cdn.example/feed"
    assert with_credentials("http://blog.example/feed", origin) == "http://blog.example/feed"
    assert (
        with_credentials("https://blog.example/f", "https://blog.example/")
        == "https://blog.example/f"
    )
    assert same_origin("https://u:p@h:8443/a", "https://h:8443/b")
    assert not same_origin("https://h:8443/a", "https://h/b")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Guarded:
    """Routes that answer only with the expected Authorization header."""

    def __init__(self, server: FeedServer) -> None:
        self.server = server
        self.seen: list[str | None] = []

    def route(self, path: str, authorization: str, body: str, status: int = 200) -> str:
        async def handler(request: web.Request) -> web.Response:
            self.seen.append(request.headers.get("Authorization"))
            if request.headers.get("Authorization") != authorization:
                return web.Response(status=401, text="who are you?")
            return web.Response(text=body, status=status, content_type="application/rss+xml")

        return self.server.route(path, handler)


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {where}: {text[:2000]}"


@pytest.fixture
async def world(feed_server: FeedServer, tmp_path: Path) -> Path:
    guarded = Guarded(feed_server)
    port = feed_server.port
    # Relative guids and links: resolved against the feed URL, without its credentials.
    private = rss([{"guid": "private/s1", "link": "/private/s1", "title": "Private one"}])
    guarded.route("/basic", basic("alice", PASSWORD), private)
    guarded.route("/token", f"Bearer {TOKEN}", rss([{"guid": "urn:t1", "title": "Token"}]))
    guarded.route("/file", f"Bearer {FILE_TOKEN}", rss([{"guid": "urn:f1", "title": "File"}]))
    guarded.route("/broken", basic("alice", PASSWORD), "oops", status=500)
    (tmp_path / "token.headers").write_text(
        f"# from LoadCredential=\nAuthorization: Bearer {FILE_TOKEN}\n"
    )
    return write_config(
        tmp_path / "config.toml",
        [
            {"url": f"http://alice:{PASSWORD}@127.0.0.1:{port}/basic", "category": "Private"},
            {
                "url": f"http://127.0.0.1:{port}/token",
                "name": "Token feed",
                "headers": {"Authorization": f"Bearer {TOKEN}"},
            },
            {"url": f"http://127.0.0.1:{port}/file", "headers_file": "token.headers"},
            {"url": f"http://alice:{PASSWORD}@127.0.0.1:{port}/broken"},
        ],
    )


async def test_credentials_work_and_are_never_shown_or_stored(
    world: Path, tmp_path: Path, feed_server: FeedServer
) -> None:
    run = await run_once(world)
    assert run.returncode == 0, run.stderr
    assert_no_secret(run.stdout + run.stderr, "the daemon's logs")
    completed = {e["source_id"]: e for e in run.named("fetch.completed")}
    assert sorted(completed) == [1, 2, 3], run.stdout
    assert completed[1]["url"].startswith("http://alice:***@127.0.0.1:")
    (failed,) = run.named("fetch.failed")
    assert failed["url"].startswith("http://alice:***@127.0.0.1:")
    assert failed["http_status"] == 500

    with closing(sqlite3.connect(tmp_path / "rssd.sqlite3")) as conn:
        posts = conn.execute(
            "SELECT external_id, url, title FROM posts ORDER BY content_source_id"
        ).fetchall()
        jobs = conn.execute("SELECT error_message, final_url FROM fetch_job").fetchall()
    port = feed_server.port
    assert posts[0] == (
        f"http://127.0.0.1:{port}/private/s1",
        f"http://127.0.0.1:{port}/private/s1",
        "Private one",
    )
    assert_no_secret(repr(posts), "posts")
    assert "alice" not in repr(posts)
    assert_no_secret(repr(jobs), "fetch_job")

    outputs = {
        "status": await cli("status", "-c", world),
        "status --json": await cli("status", "--json", "-c", world),
        "posts": await cli("posts", "-c", world),
        "posts --json": await cli("posts", "--json", "-c", world),
        "check-config": await cli("check-config", "-c", world),
        "export-opml": await cli("export-opml", "-c", world),
        "fetch": await cli("fetch", "-c", world, "1", "4"),
        "fetch unknown": await cli("fetch", "-c", world, f"http://bob:{PASSWORD}@nowhere.example/"),
    }
    for name, result in outputs.items():
        assert_no_secret(result.out + result.err, name)
    assert f"http://alice:***@127.0.0.1:{port}/basic" in outputs["status"].out
    assert f"http://alice:***@127.0.0.1:{port}/broken" in outputs["fetch"].out
    assert "no feed with URL http://bob:***@nowhere.example/" in outputs["fetch unknown"].err
    document = outputs["status --json"].json()
    assert document["sources"][0]["url"] == f"http://alice:***@127.0.0.1:{port}/basic"
    assert "headers" not in document["sources"][1]
    assert "headers: Authorization" in outputs["check-config"].out
    assert f'xmlUrl="http://alice:***@127.0.0.1:{port}/basic"' in outputs["export-opml"].out
    sources = {line["source_url"] for line in outputs["posts --json"].json_lines()}
    assert f"http://alice:***@127.0.0.1:{port}/basic" in sources


@pytest.mark.parametrize(
    ("feed", "files", "message"),
    [
        (f'headers = {{ Authorization = "Bearer {TOKEN}\\nX-Evil: 1" }}', {},
         "feeds[0].headers: the value of header 'Authorization' must be one line"),
        (f'headers = {{ "Bad Name" = "{TOKEN}" }}', {},
         "feeds[0].headers: 'Bad Name' is not a valid HTTP header name"),
        (f'headers = {{ Authorization = {{ token = "{TOKEN}" }} }}', {},
         "feeds[0].headers.Authorization: Input should be a valid string"),
        ('headers_file = "missing.headers"', {},
         "feeds[0].headers_file: cannot read {dir}/missing.headers: No such file or directory"),
        ('headers_file = "bad.headers"', {"bad.headers": f"Bearer {TOKEN}\n"},
         "feeds[0].headers_file: {dir}/bad.headers line 1: expected `Name: value`"),
        ('headers_file = "both.headers"\nheaders = { x-token = "x" }',
         {"both.headers": f"X-Token: {TOKEN}\n"},
         "feeds[0].headers_file: x-token also set in headers"),
    ],
)  # fmt: skip
def test_config_errors_never_quote_a_secret(
    tmp_path: Path, feed: str, files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    config = tmp_path / "config.toml"
    config.write_text(f'[[feeds]]\nurl = "https://alice:{PASSWORD}@h.example/f"\n{feed}\n')
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    text = "\n".join(raised.value.errors)
    assert_no_secret(text, "the config error")
    assert text.startswith(message.format(dir=tmp_path)), text
    assert text.endswith("(feed https://alice:***@h.example/f)"), text
    checked = cli_sync("check-config", "-c", config)
    assert checked.code == 1
    assert_no_secret(checked.out + checked.err, "check-config")


@pytest.mark.parametrize(
    ("feeds", "expected"),
    [
        ([f"ftp://alice:{PASSWORD}@h.example/f"],
         "feeds[0].url: URL must start with http:// or https://, got "
         "'ftp://alice:***@h.example/f' (feed ftp://alice:***@h.example/f)"),
        ([f"https://a:{PASSWORD}@h.example/x", f"https://a:{PASSWORD}@H.example/x"],
         "feeds[1]: duplicate url 'https://a:***@H.example/x' (already feeds[0])"),
    ],
)  # fmt: skip
def test_a_bad_url_with_credentials_is_reported_masked(
    tmp_path: Path, feeds: list[str], expected: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("".join(f'[[feeds]]\nurl = "{url}"\n' for url in feeds))
    checked = cli_sync("check-config", "-c", config)
    assert checked.code == 1
    assert_no_secret(checked.out + checked.err, "check-config")
    assert checked.err.strip() == f"{config}: {expected}"


def test_headers_file_is_read_at_load_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "feed").write_text(f"Authorization: Bearer {TOKEN}\n\nX-Api-Key: k\n")
    config = tmp_path / "config.toml"
    config.write_text(
        '[[feeds]]\nurl = "https://h.example/f"\nheaders_file = "secrets/feed"\n'
        'headers = { "User-Agent" = "custom" }\n'
    )
    loaded = load_config(config)
    assert loaded.feed_headers("https://H.example/f") == {
        "User-Agent": "custom",
        "Authorization": f"Bearer {TOKEN}",
        "X-Api-Key": "k",
    }
    assert TOKEN not in repr(loaded)  # a config printed by accident shows no header value


async def test_a_feeds_headers_stay_on_its_origin(feed_server: FeedServer, tmp_path: Path) -> None:
    """A redirect to another origin does not carry the token along."""
    other = FeedServer()
    await other.start()
    try:
        target = other.static("/feed", rss([{"guid": "urn:x", "title": "x"}]))

        async def redirect(request: web.Request) -> web.Response:
            return web.Response(status=302, headers={"Location": target})

        url = feed_server.route("/moved", redirect)
        config = write_config(
            tmp_path / "config.toml",
            [{"url": url, "headers": {"Authorization": f"Bearer {TOKEN}"}}],
        )
        run = await run_once(config)
        assert run.returncode == 0, run.stderr
        assert run.named("fetch.completed"), run.stdout
        assert feed_server.requests[0].headers.get("Authorization") == f"Bearer {TOKEN}"
        assert [r.headers.get("Authorization") for r in other.requests] == [None]
    finally:
        await other.stop()


async def test_a_pages_token_is_not_sent_to_a_feed_on_another_host(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    other = FeedServer()
    await other.start()
    try:
        elsewhere = other.static("/feed", rss([{"guid": "urn:e", "title": "e"}]))
        page = (
            '<html><head><link rel="alternate" type="application/rss+xml" '
            f'href="{elsewhere}"></head></html>'
        )
        url = feed_server.static("/", page, content_type="text/html")
        config = write_config(
            tmp_path / "config.toml",
            [{"url": url, "headers": {"Authorization": f"Bearer {TOKEN}"}}],
        )
        run = await run_once(config)
        assert run.returncode == 0, run.stderr
        assert run.named("source.discovered"), run.stdout
        assert [r.headers.get("Authorization") for r in feed_server.requests] == [f"Bearer {TOKEN}"]
        assert [r.headers.get("Authorization") for r in other.requests] == [None]
    finally:
        await other.stop()


@pytest.mark.parametrize("where", ["headers", "headers_file"])
def test_url_credentials_and_an_authorization_header_are_a_config_error(
    tmp_path: Path, where: str
) -> None:
    """aiohttp refuses the pair on every request before any exchange: check-config says
    so, naming the feed, without quoting either secret."""
    url = f"http://alice:{PASSWORD}@127.0.0.1:9/feed"
    if where == "headers":
        feed: dict[str, object] = {"url": url, "headers": {"authorization": f"Bearer {TOKEN}"}}
    else:
        (tmp_path / "token.headers").write_text(f"Authorization: Bearer {FILE_TOKEN}\n")
        feed = {"url": url, "headers_file": "token.headers"}
    config = write_config(tmp_path / "config.toml", [feed])
    result = cli_sync("check-config", "-c", config)
    assert result.code == 1
    assert "feeds[0]" in result.err
    assert "credentials in the URL (user:password@) and an Authorization header" in result.err
    assert not any(secret in result.out + result.err for secret in SECRETS)


def test_relative_secret_files_resolve_in_the_credentials_directory_under_systemd(
    tmp_path: Path,
) -> None:
    """One config.toml, two places: the service reads the LoadCredential= copies in
    $CREDENTIALS_DIRECTORY, an operator's shell the originals beside config.toml."""
    etc, credentials = tmp_path / "etc", tmp_path / "credentials"
    for folder, token in ((etc, TOKEN), (credentials, FILE_TOKEN)):
        folder.mkdir()
        (folder / "alice.secret").write_text(WHSEC + "\n")
        (folder / "feed-token").write_text(f"Authorization: Bearer {token}\n")
    config = etc / "config.toml"
    config.write_text(
        'database = "postgresql://rssd@db.example/rssd?sslmode=require&passfile=pgpass"\n'
        '[[feeds]]\nurl = "https://a.example/feed"\nheaders_file = "feed-token"\n'
        '[[users]]\nname = "alice"\nwebhook_url = "https://hooks.example/a"\n'
        'secret_file = "alice.secret"\nfeeds = ["*"]\n'
    )
    in_shell = load_config(config, {})
    in_service = load_config(config, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert in_shell.feeds[0].headers == {"Authorization": f"Bearer {TOKEN}"}
    assert in_service.feeds[0].headers == {"Authorization": f"Bearer {FILE_TOKEN}"}
    assert in_shell.database == (
        f"postgresql://rssd@db.example/rssd?sslmode=require&passfile={etc}/pgpass"
    )
    assert in_service.database == (
        f"postgresql://rssd@db.example/rssd?sslmode=require&passfile={credentials}/pgpass"
    )
    assert in_shell.users[0].secret is not None


def test_check_config_warns_when_a_readable_config_holds_secrets(tmp_path: Path) -> None:
    """``install -m 0644`` of a config with inline secrets: said, naming the keys, never
    the values; a config without secrets, or one others cannot read, is quiet."""
    url = f"http://alice:{PASSWORD}@127.0.0.1:9/feed"
    config = write_config(
        tmp_path / "config.toml",
        [{"url": url}, {"url": "https://b.example/f", "headers": {"X-Token": TOKEN}}],
    )
    config.chmod(0o644)
    loud = cli_sync("check-config", "-c", config)
    assert loud.code == 0, loud.err
    assert "readable by every user of this machine (mode 0644)" in loud.err
    assert "holds secrets (feeds[0].url, feeds[1].headers)" in loud.err
    assert not any(secret in loud.out + loud.err for secret in SECRETS)
    config.chmod(0o640)
    assert "holds secrets" not in cli_sync("check-config", "-c", config).err
    plain = write_config(tmp_path / "plain.toml", ["https://b.example/f"])
    plain.chmod(0o644)
    assert "holds secrets" not in cli_sync("check-config", "-c", plain).err
