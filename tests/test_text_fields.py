"""Titles and author names are stored as plain text; dates fall back to <updated>
(issue #10, items 4 and 5). Parsed by the real parse path, on real documents."""

from __future__ import annotations

import pytest

from rssd.fetch.parse import parse_document
from rssd.fetch.text import html_to_text

BASE = "http://example.org/feed.xml"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Using <code>asyncio.gather</code> &amp; friends", "Using asyncio.gather & friends"),
        ("Tom & Jerry <3", "Tom & Jerry <3"),  # no tag: nothing to remove
        ("Caf&eacute; &lt;b&gt;", "Café <b>"),  # escaped markup is text
        ("one<br>two<p>three</p>four", "one two three four"),
        ("a <script>alert(1)</script>b<style>p{}</style>", "a b"),
        ("  spaced \n  out  ", "spaced out"),
        ("&#65;&#x42;", "AB"),
    ],
)
def test_html_to_text(value: str, expected: str) -> None:
    assert html_to_text(value) == expected


RSS = b"""<?xml version="1.0"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>
<title><![CDATA[The <b>Best</b> blog &amp; more]]></title>
<item><guid>urn:a</guid><title><![CDATA[Using <code>asyncio.gather</code> &amp; friends]]></title>
  <description>&lt;p&gt;Body &lt;b&gt;kept&lt;/b&gt;&lt;/p&gt;</description></item>
<item><guid>urn:b</guid><title><![CDATA[Tom & Jerry <3]]></title></item>
<item><guid>urn:c</guid><title>A &lt;em&gt;x&lt;/em&gt; y</title>
  <dc:creator>Jo &lt;i&gt;Ann&lt;/i&gt; &amp;amp; Co</dc:creator></item>
</channel></rss>"""


@pytest.mark.parametrize("sanitize", [True, False])
def test_titles_and_authors_are_text_content_stays_html(sanitize: bool) -> None:
    outcome = parse_document(RSS, BASE, "application/rss+xml", sanitize, 10.0)
    assert outcome.error_code is None, outcome.message
    posts = {post.external_id: post for post in outcome.posts}
    assert posts["urn:a"].title == "Using asyncio.gather & friends"
    assert posts["urn:a"].summary == "<p>Body <b>kept</b></p>"
    assert posts["urn:b"].title == "Tom & Jerry <3"
    assert posts["urn:c"].title == "A x y"
    assert posts["urn:c"].author == "Jo Ann & Co"
    assert outcome.title == "The Best blog & more"


ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:f</id>
<updated>2026-11-28T10:00:00Z</updated>
<entry><id>urn:only-updated</id><title>u</title><updated>2026-11-28T10:00:00Z</updated></entry>
<entry><id>urn:both</id><title>b</title><published>2026-11-01T08:00:00+01:00</published>
  <updated>2026-11-28T10:00:00Z</updated></entry>
<entry><id>urn:neither</id><title>n</title></entry>
</feed>"""


def test_published_falls_back_to_updated() -> None:
    outcome = parse_document(ATOM, BASE, "application/atom+xml", True, 10.0)
    posts = {post.external_id: post for post in outcome.posts}
    assert posts["urn:only-updated"].published_at == "2026-11-28T10:00:00.000Z"
    assert posts["urn:only-updated"].updated_at == "2026-11-28T10:00:00.000Z"
    assert posts["urn:both"].published_at == "2026-11-01T07:00:00.000Z"
    assert posts["urn:both"].updated_at == "2026-11-28T10:00:00.000Z"
    assert posts["urn:neither"].published_at is None
