"""The search syntax of ``rssd posts --search`` and the text a post is searched by.

Pure functions, no I/O. A query becomes a small tree (``parse``) made only of words, each a
run of letters and digits; each backend renders the tree itself (rssd/repo/search.py), so
what a user types never reaches FTS5's or tsquery's own parser: a quote, an operator, a
NUL or 10 kB of text is either a query of plain words or a ``QueryError``, never a syntax
error in the database.

The syntax::

    word word        both words (anywhere in the title, text or author)
    "two words"      the words next to each other, in this order
    -word  -"a b"    not this word / phrase
    a OR b           either (OR in capitals, between two words or phrases)

Words match whole words, case and accents ignored (``Café`` finds ``cafe``); there is no
stemming (``run`` does not find ``running``), on either backend.

The indexed text (``document``) is the title, the summary and content as text (HTML
removed, entities decoded) and the author. SQLite's index keeps no copy of it, so removing
a post from it means giving the same text again, computed again from the stored row:
``document`` must therefore give the same result for the same row forever. It uses only
the standard library (no sanitizer whose output may change with its version); changing it
needs a migration that rebuilds the index.
"""

from __future__ import annotations

import html
import re
import unicodedata

from msgspec import Struct

#: A word of a query or of a post: letters and digits (``_`` separates, as in FTS5).
WORD = re.compile(r"[^\W_]+")
#: Above this many words a query is refused (clearly, not as a database error).
MAX_WORDS = 256
#: A longer word cannot match: PostgreSQL does not index words over 2,047 bytes.
MAX_WORD_CHARS = 100
#: The text of a post indexed at most (PostgreSQL's tsvector holds at most 1 MB).
MAX_TEXT_CHARS = 100_000
SNIPPET_CHARS = 160

#: What a page does not show: scripts, styles, comments (looked for only where
#: ``_MAYBE_HIDDEN`` finds one: the common post has none, and this is the slow part).
_HIDDEN = re.compile(
    r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<!\[CDATA\[.*?\]\]>", re.IGNORECASE | re.DOTALL
)
_MAYBE_HIDDEN = re.compile(r"<(?:!|script|style)", re.IGNORECASE)
#: An inline tag goes without a trace ("<b>Linux</b>, macOS"); any other tag separates.
_INLINE = re.compile(
    r"</?(?:a|abbr|b|bdi|bdo|cite|code|data|dfn|em|font|i|kbd|mark|q|s|samp|small|span"
    r"|strike|strong|sub|sup|time|tt|u|var)\b[^>]*>",
    re.IGNORECASE,
)
_TAG = re.compile(r"<[^>]*>")


class QueryError(ValueError):
    """A query that cannot be searched for; the message says why, for the user."""


class Phrase(Struct, frozen=True):
    """Words that must appear next to each other, in order (one word: just that word)."""

    words: tuple[str, ...]


class Query(Struct, frozen=True):
    """Every group must match (AND), each group by any of its phrases (OR); no post may
    contain an excluded phrase."""

    groups: tuple[tuple[Phrase, ...], ...]
    exclude: tuple[Phrase, ...] = ()

    @property
    def words(self) -> frozenset[str]:
        """The words a result matched by (for highlighting), normalized as ``fold``."""
        return frozenset(fold(w) for group in self.groups for p in group for w in p.words)


_OR = object()


def parse(text: str) -> Query:
    """``text`` as typed by a user -> a ``Query``; ``QueryError`` if nothing is left to look
    for. Total: any string is either a query or a ``QueryError``."""
    items: list[object] = []  # Phrase, ("-", Phrase) or _OR
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        negated = text[i] == "-" and i + 1 < n and not text[i + 1].isspace()
        if negated:
            i += 1
        if text[i] == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end
            raw, i = text[i + 1 : end], end + 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] != '"':
                i += 1
            raw = text[start:i]
            if raw == "OR" and not negated:
                items.append(_OR)
                continue
        words = tuple(WORD.findall(raw))
        if words:
            items.append(("-", Phrase(words)) if negated else Phrase(words))
    return _build(items)


def _build(items: list[object]) -> Query:
    groups: list[list[Phrase]] = []
    exclude: list[Phrase] = []
    joining = False  # an OR came right after a positive phrase
    for index, item in enumerate(items):
        if item is _OR:
            previous = items[index - 1] if index else None
            joining = isinstance(previous, Phrase)
            continue
        if isinstance(item, tuple):
            exclude.append(item[1])
        elif isinstance(item, Phrase):
            if joining and groups:
                groups[-1].append(item)
            else:
                groups.append([item])
        joining = False
    words = [w for p in [*exclude, *(p for g in groups for p in g)] for w in p.words]
    if len(words) > MAX_WORDS:
        raise QueryError(f"too long: {len(words)} words, at most {MAX_WORDS}")
    if any(len(word) > MAX_WORD_CHARS for word in words):
        raise QueryError(f"a word longer than {MAX_WORD_CHARS} characters cannot match")
    if not groups:
        raise QueryError("nothing to search for: give at least one word that is not excluded")
    return Query(tuple(tuple(group) for group in groups), tuple(exclude))


def fold(word: str) -> str:
    """A word as both backends compare it: lower case, accents removed (as FTS5's
    ``remove_diacritics``; PostgreSQL is given words folded this way, rssd/repo/search.py).

    Called on whole texts (``folded_words``: every new post's title, text and author on
    PostgreSQL), so it never looks at a text character by character in Python: that was
    ~0.15 us a character, most of a cold pass's database writer on PostgreSQL. ASCII has
    no decompositions and no combining marks; otherwise each distinct character is asked
    once whether it is a combining mark, and each mark found is removed in one pass."""
    if word.isascii():
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word)
    if decomposed.isascii():
        return decomposed.lower()
    for mark in [c for c in set(decomposed) if unicodedata.combining(c)]:
        decomposed = decomposed.replace(mark, "")
    return decomposed.lower()


def html_text(value: str | None) -> str:
    """HTML -> its text, for the index and snippets: hidden parts and tags removed,
    entities decoded, blanks collapsed. Standard library only (see the module docstring)."""
    if not value:
        return ""
    if "<" in value:
        if _MAYBE_HIDDEN.search(value):
            value = _HIDDEN.sub(" ", value)
        value = _TAG.sub(" ", _INLINE.sub("", value))
    if "&" in value:
        value = html.unescape(value)
    return " ".join(value.split())  # blanks collapsed (str.split is C, a regex is not)


def body_text(summary: str | None, content: str | None) -> str:
    """The summary and content as one text; a summary that is part of the content (its
    first paragraph, as feeds often give it) is not indexed twice."""
    content_text = html_text(content)
    summary_text = html_text(summary)
    if summary_text and summary_text not in content_text:
        content_text = f"{summary_text} {content_text}" if content_text else summary_text
    return content_text[:MAX_TEXT_CHARS]


class Document(Struct, frozen=True):
    """What a post is found by, column by column (title weighs most, then author)."""

    title: str
    body: str
    author: str


def document(
    title: str | None, summary: str | None, content: str | None, author: str | None
) -> Document:
    return Document(
        (title or "")[:MAX_TEXT_CHARS], body_text(summary, content), (author or "")[:MAX_TEXT_CHARS]
    )


def folded_words(text: str) -> str:
    """``text`` as the space-separated folded words PostgreSQL indexes: its parser then sees
    exactly the words FTS5's tokenizer sees (no hosts, e-mails or decimals of its own)."""
    return " ".join(WORD.findall(fold(text)))


class Snippet(Struct, frozen=True):
    """A short excerpt: ``parts`` alternate plain text and a matched word, plain first."""

    parts: tuple[str, ...]

    @property
    def text(self) -> str:
        return "".join(self.parts)


def snippet(text: str, words: frozenset[str], width: int = SNIPPET_CHARS) -> Snippet:
    """About ``width`` characters of ``text`` around the first of ``words`` (folded), the
    matches marked; the start of the text if none of them is in it (a title match)."""
    matches = [m for m in WORD.finditer(text) if fold(m.group()) in words]
    start = 0
    if matches:
        first = matches[0].start()
        start = max(0, first - width // 4)
        if start:  # start at a word
            space = text.find(" ", start, first)
            start = space + 1 if space >= 0 else start
    end = min(len(text), start + width)
    if end < len(text):
        space = text.rfind(" ", start, end)
        end = space if space > start else end
    parts: list[str] = ["…" if start else ""]
    for m in matches:
        if m.start() < start or m.end() > end:
            continue
        parts[-1] += text[start : m.start()]
        parts.extend([m.group(), ""])
        start = m.end()
    parts[-1] += text[start:end] + ("…" if end < len(text) else "")
    return Snippet(tuple(parts))
