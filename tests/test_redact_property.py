"""Issue 20.4: no password a URL can carry survives redaction.

Before: ``_USERINFO`` (rssd.models.redact) stopped at a space, ``"``, ``'``, ``<`` or ``>``,
while config.toml accepted URLs whose password held them (yarl percent-encodes them), so
``https://alice:pa ss@host/feed`` was shown whole by ``check-config``, ``status``, the logs,
and its credentials stayed in relative post ids and the webhook body's ``feed.url``.
Now one parser (``split_userinfo`` and ``CREDENTIAL_CHARS``) decides both: a URL is
accepted only if redaction reads its credentials as yarl does, and then they are masked
on their own, in running text and quoted; a password that running text cannot delimit is
refused with the advice to percent-encode it. So is a URL whose credentials are followed
by another ``@`` (a password holding ``@`` and then ``/``, ``?`` or ``#``, whose tail
every URL parser reads as a host and a path), and config.toml's other errors name such a
feed by its URL masked as the refusal masks it.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote, unquote, urljoin

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from yarl import URL

from rssd.models.config import parse_config
from rssd.models.location import ConfigError, check_database
from rssd.models.redact import redact, split_userinfo, strip_userinfo
from rssd.models.urls import check_http_url
from tests.conftest import FeedServer
from tests.support.commands import dated_rss, run_once_from
from tests.support.webhooks import Receiver
from tests.test_cmd_webhooks import write

#: Where the config.toml checked here would be (nothing is read from it).
CONFIG = Path("/srv/rssd/config.toml")
#: Markers around each generated password: if either shows, some of it leaked.
HEAD, TAIL = "ZQX9", "K7W"
#: Characters that delimit or quote: the ones running text and URL parsers disagree on.
TRICKY = " \"'<>@:%/?#\\[]&=;,!$()*+~`|^{}\u00a0\u202e"
passwords = st.text(
    alphabet=st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(list(TRICKY))),
    max_size=12,
)


def forms(password: str) -> set[str]:
    """The password as written, percent-encoded and decoded (the forms outputs may hold)."""
    return {password, quote(password, safe=""), unquote(password)} - {""}


def assert_masked(text: str, where: str) -> None:
    assert HEAD not in text and TAIL not in text, f"{where}: {text!r}"


def contexts(url: str) -> dict[str, str]:
    """Where a URL shows up as text: on its own, in a sentence, quoted, as yarl prints it."""
    return {
        "alone": url,
        "sentence": f"fetch {url} failed: HTTP 500; retrying",
        "repr": repr(url),
        "double quotes": f'feed "{url}" moved',
        "angle brackets": f"<{url}>",
        "json": json.dumps({"url": url}),
        "end of sentence": f"moved to {url}.",
    } | ({"yarl": str(URL(url))} if url.startswith("http") else {})


@settings(max_examples=400, deadline=None)
@given(password=passwords)
@example(password=" ")
@example(password='"')
@example(password="'")
@example(password="<b>")
@example(password="p@ss")
@example(password="a/b")
@example(password="a b#c")
@example(password="@;?")  # found by Hypothesis: read as host ";" and a query, "?K7W@..."
@example(password="@x/y")
def test_no_password_a_url_can_carry_survives_redaction(password: str) -> None:
    secret = f"{HEAD}{password}{TAIL}"
    url = f"https://alice:{secret}@feeds.example/feed"
    try:
        check_http_url(url)
    except ValueError as refused:
        assert_masked(str(refused), "the refusal")
        # config.toml's errors name the feed of each table by its URL too.
        with pytest.raises(ConfigError) as invalid:
            parse_config(f"[[feeds]]\nurl = {json.dumps(url)}\ninterval_minutes = 0\n", CONFIG)
        assert_masked(str(invalid.value), "config.toml's errors")
        return
    # Accepted: redaction reads the credentials exactly as yarl does...
    parsed = URL(url)
    assert parsed.host == "feeds.example"
    assert split_userinfo(url) == ("https://", f"alice:{secret}", "feeds.example/feed")
    # ... so they are masked in every context, and never in what posts resolve against.
    for where, text in contexts(url).items():
        shown = redact(text)
        assert_masked(shown, where)
        assert "alice:***@feeds.example/feed" in shown, (where, shown)
    assert strip_userinfo(url) == "https://feeds.example/feed"
    assert_masked(urljoin(strip_userinfo(url), "private/s1"), "a relative post id")
    for form in forms(secret):
        assert form not in redact(f"GET https://alice:{form}@feeds.example/x")


@settings(max_examples=200, deadline=None)
@given(password=passwords.filter(lambda text: ":" not in text))  # a ":" starts the password
def test_a_lone_user_name_is_masked_or_refused_too(password: str) -> None:
    url = f"https://{HEAD}{password}{TAIL}@feeds.example/feed"
    try:
        check_http_url(url)
    except ValueError as refused:
        assert_masked(str(refused), "the refusal")
        return
    if URL(url).host != "feeds.example":  # "/", "?" or "#" ended the authority first:
        assert URL(url).raw_user is None  # no credentials at all, a host and a path
        return
    for where, text in contexts(url).items():
        assert_masked(redact(text), where)


@settings(max_examples=200, deadline=None)
@given(password=passwords)
@example(password="@?")  # libpq and redaction both end the userinfo at the first "@"
@example(password="a@b#c")
def test_a_database_urls_password_is_masked_or_refused(password: str) -> None:
    secret = f"{HEAD}{password}{TAIL}"
    # Where libpq reads a password: userinfo up to the first "/", a parameter up to "&"/"#".
    for url, ends in (
        (f"postgresql://rssd:{secret}@db.example/rssd", "/"),
        (f"postgresql://rssd@db/r?password={secret}", "&#"),
    ):
        if any(char in password for char in ends):
            continue  # no password then, but a path or another parameter
        try:
            check_database(url)
        except ValueError as refused:
            assert_masked(str(refused), "the refusal")
            continue
        for where, text in contexts(url).items():
            assert_masked(redact(text, keep_user=True), where)


@pytest.mark.parametrize(
    ("char", "encoded"), [(" ", "%20"), ('"', "%22"), ("<", "%3C"), (">", "%3E")]
)
def test_a_password_running_text_cannot_delimit_is_refused_with_its_encoding(
    char: str, encoded: str
) -> None:
    with pytest.raises(ValueError) as refused:
        check_http_url(f"https://alice:pa{char}ss@feeds.example/feed")
    assert f"write it percent-encoded ({encoded})" in str(refused.value)
    assert "pa" not in str(refused.value).replace("percent", "")
    # Encoded, the same password is accepted (and masked, as above).
    assert check_http_url(f"https://alice:pa{encoded}ss@feeds.example/feed")


def test_an_apostrophe_is_a_legal_password_character_and_masked() -> None:
    url = "https://alice:it's@feeds.example/feed"
    assert check_http_url(url) == url
    assert redact(f"got {url!r}") == 'got "https://alice:***@feeds.example/feed"'


async def test_webhook_bodies_carry_no_password(
    feed_server: FeedServer, receiver: Receiver, tmp_path: Path
) -> None:
    """feed.url and the external ids resolved against the feed URL, end to end."""
    password = "it's%20a%22pw'"
    plain = feed_server.static("/private/feed", dated_rss(["one", "two"], name="p"))
    feed = plain.replace("http://", f"http://reader:{password}@", 1)
    config = write(tmp_path / "config.toml", [feed], {"alice": (receiver.url("alice"), [feed])})
    await run_once_from(config)
    (message,) = receiver.received
    assert message.body["data"]["feed"]["url"] == plain
    ids = sorted(post["external_id"] for post in message.body["data"]["posts"])
    assert ids == [urljoin(plain, "p-0"), urljoin(plain, "p-1")]
    raw = json.dumps(message.body)
    for form in forms(password) | {"reader"}:
        assert form not in raw
