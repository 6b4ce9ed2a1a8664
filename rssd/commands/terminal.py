"""Text from outside made safe for a terminal: what a publisher wrote must never drive it.

Feed titles, URLs, error messages (which quote servers: a reason phrase, a Location, an
HTML page's link) and OPML titles reach the operator's terminal. Raw, an ESC or a C1 CSI
(U+009B) starts a control sequence (window title, screen clear, forged rows, OSC 52
clipboard writes), and a bidi override (U+202E) or a zero-width character makes a line
read as something it is not. Every human output therefore shows such a character as a
visible escape (``\\x1b``, ``\\u202e``); JSON output keeps the exact value but escapes
them (``\\u001b``), which any JSON reader turns back into the same string.

Unsafe: C0 and C1 controls and DEL, every Unicode format character (category Cf: bidi
embeddings, overrides and isolates, zero-width space/joiners, BOM, tag characters),
line and paragraph separators, and lone surrogates. A ZWJ inside an emoji sequence is
escaped too: one rule that holds everywhere beats a display nicety.
"""

from __future__ import annotations

import re
import unicodedata

#: Everything that can never be unsafe: printable ASCII. Checked first, as most text is.
_PLAIN = re.compile(r"[\x20-\x7e]*")
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def is_unsafe(char: str) -> bool:
    """Whether one character may change what a terminal shows or how a line reads."""
    code = ord(char)
    if code < 0x80:
        return code < 0x20 or code == 0x7F
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _map(text: str, keep: str, replace: bool) -> str:
    if _PLAIN.fullmatch(text):
        return text
    out = []
    for char in text:
        if char in keep or not is_unsafe(char):
            out.append(char)
        elif replace:
            out.append(_escape(char))
    return "".join(out)


def safe_text(text: str) -> str:
    """One line for a person: every unsafe character (newlines and tabs too) escaped."""
    return _map(text, "", True)


def safe_lines(text: str) -> str:
    """A whole human output: lines stay lines, every other unsafe character is escaped.
    Idempotent, so a renderer can apply it to cells and the caller to the whole."""
    return _map(text, "\n", True)


def strip_unsafe(text: str) -> str:
    """``text`` without its unsafe characters: for values rssd writes into a file (an
    OPML title kept as a feed's name, an exported OPML attribute)."""
    return _map(text, "", False)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def safe_json(document: str) -> str:
    """``json.dumps(..., ensure_ascii=False)`` output with unsafe characters as ``\\uXXXX``.

    Valid because json.dumps writes such characters only inside strings (C0 it already
    escapes), where ``\\uXXXX`` means exactly the character: the decoded value is
    unchanged, and readable non-ASCII text (é, 日本) stays as it is.
    """
    if _PLAIN.fullmatch(document):
        return document
    return "".join(_json_escape(c) if c != "\n" and is_unsafe(c) else c for c in document)
