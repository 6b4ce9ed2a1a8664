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
escaped too: one rule that holds everywhere beats a display nicety. The one exception is
the tab, which can do no harm and is shown as a space (a ``\x09`` in a title only puzzled).
"""

from __future__ import annotations

import re

#: Unsafe characters as one class, so a whole output is checked at C speed: C0, DEL, C1,
#: and every character of the categories Cf, Cs, Zl, Zp in Unicode 14 (Python 3.11), plus
#: the Cf characters Unicode 15 added (U+13439-U+1343F). tests/test_hostile_terminal.py
#: checks it against ``unicodedata`` over every code point.
_CLASS = (
    "\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
)
_UNSAFE = re.compile(f"[{_CLASS}]")
_UNSAFE_BUT_NEWLINE = re.compile(f"(?!\n)[{_CLASS}]")


def is_unsafe(char: str) -> bool:
    """Whether one character may change what a terminal shows or how a line reads."""
    return _UNSAFE.fullmatch(char) is not None


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x09:  # a tab drives nothing and reads as a gap: one space, not "\x09"
        return " "
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def has_unsafe(text: str) -> bool:
    """Whether ``text`` holds any unsafe character (newlines and tabs count)."""
    return _UNSAFE.search(text) is not None


def safe_text(text: str) -> str:
    """One line for a person: every unsafe character (newlines too) escaped; a tab is a
    space."""
    return _UNSAFE.sub(_escape, text)


def safe_lines(text: str) -> str:
    """A whole human output: lines stay lines, every other unsafe character is escaped.
    Idempotent, so a renderer can apply it to cells and the caller to the whole."""
    return _UNSAFE_BUT_NEWLINE.sub(_escape, text)


def strip_unsafe(text: str) -> str:
    """``text`` without its unsafe characters: for values rssd writes into a file (an
    OPML title kept as a feed's name, an exported OPML attribute)."""
    return _UNSAFE.sub("", text)


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
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
    return _UNSAFE_BUT_NEWLINE.sub(_json_escape, document)
