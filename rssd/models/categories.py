"""Categories (config.toml's folders, "Blogs / Linux"): plain functions, no pydantic."""

from __future__ import annotations


def normalize_category(value: str) -> str:
    """``"Blogs/Linux "`` -> ``"Blogs / Linux"``: folders separated by " / "."""
    parts = [" ".join(part.split()) for part in value.split("/")]
    if not all(parts):
        raise ValueError(f'{value!r}: every folder of a category needs a name ("Blogs / Linux")')
    return " / ".join(parts)


def in_category(category: str | None, wanted: str) -> bool:
    """Whether a feed filed under ``category`` is in folder ``wanted`` or below it
    ("Blogs" holds "Blogs / Linux"); case-insensitive."""
    if category is None:
        return False
    have, want = category.casefold(), normalize_category(wanted).casefold()
    return have == want or have.startswith(want + " / ")
