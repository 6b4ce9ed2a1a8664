"""Titles and author names as plain text: what a reader of the database can print as is.

Feeds carry titles as text or as HTML (an Atom ``type="html"`` title, an RSS title in
CDATA with markup in it), and a column that holds either cannot be displayed correctly:
``Tom & Jerry <3`` and ``Using <code>gather</code> &amp; friends`` look alike. So titles and
author names are stored as text: markup removed (with the content of scripts and styles),
entities decoded, runs of blanks made one space. Content and summary stay HTML.
"""

from __future__ import annotations

import html
import re
from functools import lru_cache

import nh3

#: Elements that separate words when rendered: replaced by a space before the tags go.
_BREAKS = re.compile(r"<(?:br|/?p|/div|/li|/h[1-6]|/td|/tr)\b[^>]*>", re.IGNORECASE)
_BLANKS = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _stripper() -> nh3.Cleaner:
    return nh3.Cleaner(tags=set(), attributes={}, link_rel=None)


def html_to_text(value: str) -> str:
    """HTML -> the text it shows: no markup, entities decoded, blanks collapsed."""
    if "<" not in value and "&" not in value:
        return _BLANKS.sub(" ", value).strip()
    stripped = _stripper().clean(_BREAKS.sub(" ", value))
    return _BLANKS.sub(" ", html.unescape(stripped)).strip()
