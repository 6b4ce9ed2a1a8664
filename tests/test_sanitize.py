"""The nh3 sanitizer: what it must drop, what it must keep, which base it resolves against."""

from __future__ import annotations

import pytest

from rssd.fetch.parse import parse_document
from rssd.fetch.sanitize import clean_html

BASE = "http://example.org/blog/feed.xml"

DROPPED = [
    # (html, text that must not survive)
    ("<p>a<script>alert(1)</script>b</p>", "alert"),
    ("<p>a<script>alert(1)</script>b</p>", "<script"),
    ("<style>p { color: red }</style><p>x</p>", "color"),
    ('<p onclick="evil()">x</p>', "onclick"),
    ('<img src="x.png" onerror="evil()">', "onerror"),
    ('<a href="javascript:evil()">x</a>', "javascript"),
    ('<a href="JaVaScRiPt:evil()">x</a>', "evil"),
    ('<a href="&#106;avascript:evil()">x</a>', "evil"),
    ('<img src="data:image/svg+xml;base64,PHN2Zz4=">', "data:"),
    ('<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>', "data:"),
    (
        '<img src="data:image/png;base64,AAAA"><a href="data:image/png;base64,AAAA">x</a>',
        "<a href",
    ),  # a data: image as a link target goes (the <a> stays, its href not)
    ('<iframe src="http://evil.example/"></iframe>', "iframe"),
    ('<object data="x.swf"></object><embed src="x.swf">', "swf"),
    ('<form action="/steal"><input name="p"></form>', "input"),
    ('<p style="position:fixed">x</p>', "position"),
    ('<p class="pub-only">x</p>', "pub-only"),
    ("<p>x</p><!-- tracking comment -->", "tracking"),
    ("<svg><script>evil()</script></svg>", "evil"),
    ('<math><mi xlink:href="javascript:evil()">x</mi></math>', "evil"),
    ("<meta http-equiv=refresh content='0;url=http://evil.example/'>", "refresh"),
    ('<base href="http://evil.example/">', "evil.example"),
]


@pytest.mark.parametrize(("html", "gone"), DROPPED)
def test_executable_and_foreign_markup_is_dropped(html: str, gone: str) -> None:
    assert gone.lower() not in clean_html(html, BASE).lower()


KEPT = [
    # (html, expected output)
    (
        "<p>plain <em>text</em> &amp; <strong>markup</strong></p>",
        "<p>plain <em>text</em> &amp; <strong>markup</strong></p>",
    ),
    ('<a href="http://e.org/x" title="T">x</a>', '<a href="http://e.org/x" title="T">x</a>'),
    (
        '<img src="http://e.org/i.png" alt="A" width="10">',
        '<img src="http://e.org/i.png" alt="A" width="10">',
    ),
    (
        '<ul><li>1</li></ul><ol start="3"><li>3</li></ol>',
        '<ul><li>1</li></ul><ol start="3"><li>3</li></ol>',
    ),
    (
        "<table><tbody><tr><td>c</td></tr></tbody></table>",
        "<table><tbody><tr><td>c</td></tr></tbody></table>",
    ),
    (
        '<video src="http://e.org/v.mp4" controls="" poster="http://e.org/p.jpg"></video>',
        '<video src="http://e.org/v.mp4" controls="" poster="http://e.org/p.jpg"></video>',
    ),
    (
        '<audio controls=""><source src="http://e.org/a.mp3" type="audio/mpeg"></audio>',
        '<audio controls=""><source src="http://e.org/a.mp3" type="audio/mpeg"></audio>',
    ),
    ('<a href="mailto:ann@e.org">mail</a>', '<a href="mailto:ann@e.org">mail</a>'),
    (
        '<img src="data:image/png;base64,iVBORw0KGgo=" alt="inline">',
        '<img src="data:image/png;base64,iVBORw0KGgo=" alt="inline">',
    ),
    ("<p>unclosed <b>bold", "<p>unclosed <b>bold</b></p>"),
]


@pytest.mark.parametrize(("html", "expected"), KEPT)
def test_ordinary_markup_is_kept(html: str, expected: str) -> None:
    assert clean_html(html, BASE) == expected


RELATIVE = [
    # (html, base, expected)
    ('<a href="/about">a</a>', BASE, '<a href="http://example.org/about">a</a>'),
    ('<a href="post-1">a</a>', BASE, '<a href="http://example.org/blog/post-1">a</a>'),
    ('<img src="../i.png">', BASE, '<img src="http://example.org/i.png">'),
    ('<a href="//cdn.example/x">a</a>', BASE, '<a href="http://cdn.example/x">a</a>'),
    ('<a href="#top">a</a>', BASE, '<a href="http://example.org/blog/feed.xml#top">a</a>'),
    ('<a href="/about">a</a>', None, '<a href="/about">a</a>'),  # no base: kept as is
    ('<a href="/about">a</a>', "not a url", '<a href="/about">a</a>'),
]


@pytest.mark.parametrize(("html", "base", "expected"), RELATIVE)
def test_relative_urls_resolve_against_the_base(html: str, base: str | None, expected: str) -> None:
    assert clean_html(html, base) == expected


def atom(entry: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>F</title><id>urn:f</id>'
        f"<updated>2026-01-01T00:00:00Z</updated><entry><id>urn:e</id>{entry}</entry></feed>"
    ).encode()


def only(body: bytes, *, sanitize: bool = True) -> dict[str, str | None]:
    outcome = parse_document(body, BASE, "application/atom+xml", sanitize, 10.0)
    assert outcome.error_code is None, outcome.message
    (post,) = outcome.posts
    return {"title": post.title, "summary": post.summary, "content": post.content}


def test_entry_xml_base_wins_over_the_feed_url() -> None:
    post = only(
        atom(
            '<title>t</title><content type="html" xml:base="http://other.example/dir/">'
            "&lt;a href=&quot;x&quot;&gt;x&lt;/a&gt;</content>"
        )
    )
    assert post["content"] == '<a href="http://other.example/dir/x">x</a>'


def test_atom_html_title_summary_and_content_are_cleaned() -> None:
    post = only(
        atom(
            '<title type="html">A &lt;script&gt;x()&lt;/script&gt;&lt;em&gt;t&lt;/em&gt;</title>'
            '<summary type="html">&lt;p onclick="e()"&gt;s&lt;/p&gt;</summary>'
            '<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">'
            '<p><a href="/c" onmouseover="e()">c</a></p></div></content>'
        )
    )
    assert post["title"] == "A t"  # titles are plain text (rssd.fetch.text)
    assert post["summary"] == "<p>s</p>"
    assert post["content"] is not None
    assert 'href="http://example.org/c"' in post["content"]
    assert "onmouseover" not in post["content"]


def test_summary_copied_from_content_is_the_cleaned_copy() -> None:
    """feedparser fills a missing Atom summary with the content's raw value."""
    html = "&lt;a href=&quot;/c&quot;&gt;c&lt;/a&gt;&lt;script/&gt;"
    post = only(atom(f'<content type="html">{html}</content>'))
    assert post["content"] == '<a href="http://example.org/c">c</a>'
    assert post["summary"] == post["content"]


def test_plain_text_fields_are_not_treated_as_html() -> None:
    post = only(atom('<title type="text">1 &lt; 2 &amp;&amp; a &lt;b&gt;</title>'))
    assert post["title"] == "1 < 2 && a <b>"


def test_nothing_is_cleaned_when_sanitizing_is_off() -> None:
    body = atom('<content type="html">&lt;a href="/c" onclick="e()"&gt;c&lt;/a&gt;</content>')
    assert only(body, sanitize=False)["content"] == '<a href="/c" onclick="e()">c</a>'
