"""Issue 14.2: whatever a feed says its text is, what rssd stores in an HTML column is safe.

tests/fixtures/hostile/stored-script.atom is served on loopback and fetched by a real
``run_once``: Atom ``type="text"`` summary and content holding escaped ``<script>`` and
``<img onerror>`` (stored before as live markup), ``javascript:`` and ``data:text/html``
links (stored before as the post URL), and mutation-XSS HTML that nh3 must keep
neutralising. The stored columns are read back with a real HTML parser.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, FeedServer
from tests.support.resilience import Post, run_feeds

FEED = (FIXTURES / "hostile" / "stored-script.atom").read_bytes()


class Elements(HTMLParser):
    """Every start tag and its attributes, as a browser's tokenizer would see them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def executable(html: str) -> list[str]:
    """What in ``html`` would run: script-ish elements, handlers, script URLs."""
    found = []
    for tag, attrs in Elements(html).tags:
        if tag in ("script", "style", "iframe", "object", "embed", "svg", "math", "form"):
            found.append(tag)
        for name, value in attrs.items():
            if name.startswith("on"):
                found.append(f"{tag}[{name}]")
            compact = "".join((value or "").split()).lower()
            if compact.startswith(("javascript:", "data:text", "vbscript:")):
                found.append(f"{tag}[{name}={value}]")
    return found


async def stored(
    feed_server: FeedServer, tmp_path: Path, *, sanitize: bool = True
) -> dict[str, Post]:
    url = feed_server.static("/stored-script", FEED, content_type="application/atom+xml")
    result = await run_feeds(tmp_path, [url], sanitize_html=sanitize)
    result.assert_completed(url, 3)
    return {post.external_id: post for post in result.posts[url]}


@pytest.mark.parametrize("sanitize", [True, False])
async def test_text_fields_are_escaped_into_html(
    feed_server: FeedServer, tmp_path: Path, sanitize: bool
) -> None:
    """Escaping text is what makes it HTML, so it happens even with sanitize_html off."""
    posts = await stored(feed_server, tmp_path, sanitize=sanitize)
    text = posts["urn:hostile:text-summary"]
    assert text.summary == "&lt;script&gt;alert(document.cookie)&lt;/script&gt;"
    assert text.content == "&lt;img src=x onerror=alert(1)&gt;"
    assert Elements(text.summary).tags == [] and Elements(text.content).tags == []
    assert posts["urn:hostile:data-link"].content == "1 &lt; 2 &amp;&amp; &lt;b&gt;bold?&lt;/b&gt;"


async def test_links_that_are_not_http_are_not_stored(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    posts = await stored(feed_server, tmp_path)
    assert posts["urn:hostile:text-summary"].url is None  # javascript:
    assert posts["urn:hostile:data-link"].url is None  # data:text/html
    assert posts["urn:hostile:mxss"].url == "https://example.org/fine"


async def test_mutation_xss_stays_neutralised(feed_server: FeedServer, tmp_path: Path) -> None:
    """What held: nh3 (html5ever) serialises what a browser would parse, so re-parsing
    the stored HTML finds nothing executable."""
    posts = await stored(feed_server, tmp_path)
    mxss = posts["urn:hostile:mxss"]
    assert mxss.summary is not None  # cleaned, not dropped (the content is all script)
    for post in posts.values():
        for column in (post.summary, post.content):
            assert executable(column or "") == [], column
