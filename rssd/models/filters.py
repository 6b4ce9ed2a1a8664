"""A user's ``keep`` / ``block`` filters: parsed once from config, applied as pure functions.

A rule is ``field=regex``; a post passes when no ``block`` rule matches and, if there are
``keep`` rules, at least one of them does (block wins over keep; no keep = keep all).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from msgspec import Struct

#: The fields a rule may name. ``content`` also searches the summary: many feeds carry
#: their text in only one of the two. ``category`` is the feed's (its ``category`` in
#: config.toml, "Blogs / Linux").
FIELDS = ("title", "url", "author", "content", "category")


class Rule(Struct, frozen=True):
    field: str
    pattern: re.Pattern[str]

    @property
    def text(self) -> str:
        return f"{self.field}={self.pattern.pattern}"

    def matches(self, post: Mapping[str, str | None]) -> bool:
        return any(self.pattern.search(value) for value in _values(post, self.field))


def parse_rule(text: str) -> Rule:
    """``title=(?i)python`` -> Rule; a ValueError says what is wrong, never silently nothing."""
    field, sep, pattern = text.partition("=")
    field = field.strip()
    if not sep or not field:
        raise ValueError(f"filter {text!r} must be field=regex, e.g. 'title=(?i)python'")
    if field not in FIELDS:
        raise ValueError(f"filter {text!r}: unknown field {field!r} (one of {', '.join(FIELDS)})")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"filter {text!r}: bad regex: {exc}") from None
    return Rule(field, compiled)


class Filters(Struct, frozen=True):
    keep: tuple[Rule, ...] = ()
    block: tuple[Rule, ...] = ()

    @classmethod
    def parse(cls, keep: Sequence[str], block: Sequence[str]) -> Filters:
        return cls(tuple(parse_rule(t) for t in keep), tuple(parse_rule(t) for t in block))


def passes(filters: Filters, post: Mapping[str, str | None]) -> bool:
    """Whether ``post`` (its fields by name) is announced to a user with these filters."""
    if any(rule.matches(post) for rule in filters.block):
        return False
    return not filters.keep or any(rule.matches(post) for rule in filters.keep)


def _values(post: Mapping[str, str | None], field: str) -> list[str]:
    names = ("content", "summary") if field == "content" else (field,)
    return [value for name in names if (value := post.get(name))]
