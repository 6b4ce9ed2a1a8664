"""The search syntax (rssd/models/search.py) and its renderings (rssd/repo/search.py), as
pure functions; and, property-based, that no string reaches either database's query
parser as anything but plain words: FTS5 (an in-memory table) and PostgreSQL (tsquery)."""

from __future__ import annotations

import asyncio
import sqlite3
import unicodedata
from collections.abc import Iterator
from contextlib import closing

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rssd.models.search import (
    MAX_WORDS,
    Phrase,
    Query,
    QueryError,
    body_text,
    document,
    fold,
    folded_words,
    html_text,
    parse,
    snippet,
)
from rssd.repo.postgres import translate
from rssd.repo.search import fts5_match, tsquery_sql
from tests.support.postgres import fresh_database


def q(*groups: tuple[str, ...] | list[tuple[str, ...]], exclude: tuple[str, ...] = ()) -> Query:
    """A Query from word tuples: a tuple is one phrase, a list of tuples one OR group."""
    out = []
    for group in groups:
        phrases = group if isinstance(group, list) else [group]
        out.append(tuple(Phrase(p) for p in phrases))
    return Query(tuple(out), tuple(Phrase((w,)) for w in exclude))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("python", q(("python",))),
        ("python asyncio", q(("python",), ("asyncio",))),
        ('"task group" python', q(("task", "group"), ("python",))),
        ("python -django", q(("python",), exclude=("django",))),
        ('python -"bad words"', Query(((Phrase(("python",)),),), (Phrase(("bad", "words")),))),
        ("a OR b c", q([("a",), ("b",)], ("c",))),
        ("a OR b OR c", q([("a",), ("b",), ("c",)])),
        ("a or b", q(("a",), ("or",), ("b",))),  # lower-case "or" is a word
        ("OR a", q(("a",))),  # an OR with nothing before it is dropped
        ("a OR", q(("a",))),
        ("a OR -b", q(("a",), exclude=("b",))),
        ("foo-bar", q(("foo", "bar"))),  # as FTS5 reads it: a phrase of two words
        ("c++ e.g.", q(("c",), ("e", "g"))),
        ('"unclosed phrase', q(("unclosed", "phrase"))),
        ("- lone dash", q(("lone",), ("dash",))),
        ("snake_case", q(("snake", "case"))),
        ("Café", q(("Café",))),
        ("x\x00y", q(("x", "y"))),  # as foo-bar
        (
            'NEAR(a b) AND "c" NOT d*',
            q(("NEAR", "a"), ("b",), ("AND",), ("c",), ("NOT",), ("d",)),
        ),
    ],
)
def test_parse(text: str, expected: Query) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "nothing to search for"),
        ("   ", "nothing to search for"),
        ('"" -- ** ()', "nothing to search for"),
        ("-python", "nothing to search for"),
        ("OR", "nothing to search for"),
        ("word " * (MAX_WORDS + 1), "too long"),
        ("x" * 101, "longer than 100"),
    ],
)
def test_queries_that_cannot_be_searched_say_why(text: str, why: str) -> None:
    with pytest.raises(QueryError, match=why):
        parse(text)


@pytest.mark.parametrize(
    ("query", "fts5"),
    [
        (q(("python",)), '"python"'),
        (q(("task", "group"), ("python",)), '"task group" AND "python"'),
        (q([("a",), ("b", "c")], ("d",)), '("a" OR "b c") AND "d"'),
        (q(("a",), exclude=("x", "y")), '("a") NOT ("x" OR "y")'),
    ],
)
def test_fts5_rendering(query: Query, fts5: str) -> None:
    assert fts5_match(query) == fts5


def test_tsquery_rendering_binds_every_phrase() -> None:
    sql, params = tsquery_sql(q([("Café",), ("b", "c")], ("d",), exclude=("x",)))
    assert sql == (
        "((phraseto_tsquery('simple', :q0) || phraseto_tsquery('simple', :q1))"
        " && (phraseto_tsquery('simple', :q2))) && !!(phraseto_tsquery('simple', :q3))"
    )
    assert params == {"q0": "cafe", "q1": "b c", "q2": "d", "q3": "x"}


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>Using <code>gather</code> &amp; friends</p>", "Using gather & friends"),
        ("<p>On <strong>Linux</strong>, macOS</p><p>and more</p>", "On Linux, macOS and more"),
        ("one<br>two<li>three", "one two three"),
        ('<a href="http://x.example/">link</a>', "link"),
        ("<script>var secret = 1;</script>shown<style>p{}</style>", "shown"),
        ("a<!-- hidden -->b", "a b"),
        ("plain\n\ttext", "plain text"),
        (None, ""),
    ],
)
def test_html_text(html: str | None, text: str) -> None:
    assert html_text(html) == text


def test_a_summary_inside_the_content_is_indexed_once() -> None:
    assert body_text("<p>First para.</p>", "<p>First para.</p><p>More.</p>") == "First para. More."
    assert body_text("Teaser", "<p>Body.</p>") == "Teaser Body."
    assert body_text(None, None) == ""
    assert document("T", None, "<b>x</b>", None).body == "x"


def test_fold_and_folded_words() -> None:
    assert fold("Crème BRÛLÉE") == "creme brulee"
    assert folded_words("Hello, wörld! snake_case 3.14") == "hello world snake case 3 14"


def test_snippet_marks_the_matched_words_around_the_first() -> None:
    text = "alpha " * 40 + "the Python snake and python again " + "omega " * 40
    found = snippet(text, frozenset({"python"}), width=60)
    assert found.parts[1] == "Python" and found.parts[3] == "python"
    assert found.parts[0].startswith("…") and found.parts[-1].endswith("…")
    assert len(found.text) <= 62
    assert snippet("no match here", frozenset({"x"})).parts == ("no match here",)
    assert snippet("Café au lait", frozenset({"cafe"})).parts == ("", "Café", " au lait")


# -- no string is more than words to the databases -------------------------------------------

HOSTILE = st.one_of(
    st.text(max_size=200),
    st.text(alphabet="\"-*()^:+ORNEAND\x00\\' \t", max_size=60),
    st.lists(st.sampled_from(['"', "-", "OR", "NOT", "AND", "NEAR(", "*", "^", ":", "a", "b"])).map(
        " ".join
    ),
)
SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(scope="module")
def fts() -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute(
            "CREATE VIRTUAL TABLE posts_fts USING fts5 (title, body, author, content = '', "
            "tokenize = 'unicode61 remove_diacritics 2')"
        )
        conn.execute(
            "INSERT INTO posts_fts (rowid, title, body, author) VALUES (1, 'a b', 'or and', 'x')"
        )
        yield conn


@pytest.fixture(scope="module")
def pg() -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection to a database of this module's own (tsquery needs no tables)."""
    with asyncio.Runner() as runner:
        manager = fresh_database()
        url = runner.run(manager.__aenter__())
        try:
            with psycopg.Connection.connect(url, autocommit=True) as conn:
                yield conn
        finally:
            runner.run(manager.__aexit__(None, None, None))


def _parsed(text: str) -> Query | None:
    try:
        return parse(text)
    except QueryError:
        return None


@SETTINGS
@given(text=HOSTILE)
def test_any_string_is_plain_words_to_fts5(fts: sqlite3.Connection, text: str) -> None:
    query = _parsed(text)
    if query is not None:
        fts.execute("SELECT rowid FROM posts_fts WHERE posts_fts MATCH ?", (fts5_match(query),))


@SETTINGS
@given(text=HOSTILE)
def test_any_string_is_plain_words_to_tsquery(
    pg: psycopg.Connection[tuple[object, ...]], text: str
) -> None:
    query = _parsed(text)
    if query is not None:
        sql, params = tsquery_sql(query)
        pg.execute(translate(f"SELECT to_tsvector('simple', 'a b') @@ ({sql})"), params)


@pytest.mark.parametrize("size", [10_000, 10_240])
def test_a_10_kb_query_is_words_or_a_clear_refusal(fts: sqlite3.Connection, size: int) -> None:
    word_soup = ('"a" OR -b ' * size)[:size]
    with pytest.raises(QueryError, match="too long"):
        parse(word_soup)
    one_word = parse("x" * 99 + " " + "\x00" * (size - 100))
    fts.execute("SELECT rowid FROM posts_fts WHERE posts_fts MATCH ?", (fts5_match(one_word),))


def _fold_by_character(word: str) -> str:
    """``fold`` as it was first written, one character at a time: the reference the fast
    one must equal, since PostgreSQL's stored words and every query are folded by it."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain ASCII, Mixed CASE 123_x",
        "Crème BRÛLÉE",
        "e\u0301t\u0301e\u0301",  # letters followed by combining accents
        "Tiếng Việt có dấu",  # stacked marks
        "\u0130stanbul \u0131I",  # Turkish dotted capital I: NFKD gives I + U+0307
        "\ufb01nance \u00b2 \uff21\uff22 \u338f \u216b",  # compatibility forms
        "Ελληνικά ΆΈΉ ς",
        "עִבְרִית עם ניקוד",  # Hebrew points
        "العَرَبِيَّة",  # Arabic marks
        "한국어 조선글",  # Hangul syllables decompose into jamo (not combining)
        "emoji 👍🏽 zero\u200dwidth “curly” — dash",
        "\u0301\u0302 leading marks",
    ],
)
def test_fold_equals_the_character_by_character_fold(text: str) -> None:
    assert fold(text) == _fold_by_character(text)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_fold_equals_the_character_by_character_fold_on_any_text(text: str) -> None:
    assert fold(text) == _fold_by_character(text)
