"""Pure decisions about what a fetch changed: no I/O, tested table-driven."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from msgspec import Struct

from rssd.models.post import PostCreate


class UpsertPlan(Struct, frozen=True):
    """Which incoming posts to insert, which to update in place, how many to leave alone."""

    new: tuple[PostCreate, ...]
    changed: tuple[PostCreate, ...]
    unchanged: int


def dedupe_posts(posts: Iterable[PostCreate]) -> list[PostCreate]:
    """Collapse repeated external ids within one document: the first occurrence wins."""
    seen: set[str] = set()
    out = []
    for post in posts:
        if post.external_id not in seen:
            seen.add(post.external_id)
            out.append(post)
    return out


def plan_upsert(incoming: Sequence[PostCreate], stored: Mapping[str, str]) -> UpsertPlan:
    """Compare incoming posts with stored ``external_id -> content_hash``.

    A post is new when its id is not stored, changed when its hash differs; identical posts
    are not written at all, so a re-fetch of an unchanged feed costs no writes.
    """
    new, changed, unchanged = [], [], 0
    for post in dedupe_posts(incoming):
        stored_hash = stored.get(post.external_id)
        if stored_hash is None:
            new.append(post)
        elif stored_hash != post.content_hash:
            changed.append(post)
        else:
            unchanged += 1
    return UpsertPlan(tuple(new), tuple(changed), unchanged)
