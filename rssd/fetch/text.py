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

#: The most of a field rssd stores (rssd.fetch.entries.clean_text), and the most of a
#: field handed to nh3: html5ever's tree for tag-dense HTML takes ~50 bytes per input
#: character (a 10 MB description took a worker to 535 MB), and what lies past the cap is
#: cut from the stored field anyway.
MAX_FIELD_CHARS = 1_000_000

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
    stripped = _stripper().clean(_BREAKS.sub(" ", value[:MAX_FIELD_CHARS]))
    return _BLANKS.sub(" ", html.unescape(stripped)).strip()
