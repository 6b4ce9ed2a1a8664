"""Repair numeric character references that make feedparser raise, before it sees them.

feedparser encodes each ``&#...;`` with ``chr(n).encode()``: a UTF-16 surrogate (an emoji
written as ``&#xD83D;&#xDE00;``, as some CMSs emit) or a number past U+10FFFF raises, and
the whole document is lost on every fetch. Pairs are joined into the character they mean;
anything else that cannot be a character becomes U+FFFD, as a browser shows it.
"""

from __future__ import annotations

import re

_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,16})|([0-9]{1,20}));")
_MAX = 0x10FFFF


def _value(match: re.Match[bytes]) -> int:
    hex_digits, decimal = match.group(1), match.group(2)
    return int(hex_digits, 16) if hex_digits is not None else int(decimal)


def repair_char_refs(body: bytes) -> bytes:
    """``body`` with surrogate pairs joined and impossible references replaced."""
    if b"&#" not in body:
        return body
    out: list[bytes] = []
    last = 0
    pending: re.Match[bytes] | None = None  # a high surrogate waiting for its low half
    for match in _REF.finditer(body):
        value = _value(match)
        if pending is not None:
            high = _value(pending)
            if 0xDC00 <= value <= 0xDFFF and pending.end() == match.start():
                code = 0x10000 + ((high - 0xD800) << 10) + (value - 0xDC00)
                out.append(body[last : pending.start()] + b"&#x%X;" % code)
                last = match.end()
                pending = None
                continue
            out.append(body[last : pending.start()] + b"&#xFFFD;")
            last = pending.end()
            pending = None
        if 0xD800 <= value <= 0xDBFF:
            pending = match
        elif 0xDC00 <= value <= 0xDFFF or value > _MAX:
            out.append(body[last : match.start()] + b"&#xFFFD;")
            last = match.end()
    if pending is not None:
        out.append(body[last : pending.start()] + b"&#xFFFD;")
        last = pending.end()
    if not out:
        return body
    out.append(body[last:])
    return b"".join(out)
