"""rssd/models/changes.py: which posts a fetch inserts, updates, or leaves alone."""

from __future__ import annotations

import pytest

from rssd.models.changes import UpsertPlan, dedupe_posts, plan_upsert
from rssd.models.dto import PostCreate


def p(spec: str) -> PostCreate:
    """``"a:1"`` is the post with external id ``a`` and content hash ``1``."""
    external_id, _, content_hash = spec.partition(":")
    return PostCreate(external_id=external_id, content_hash=content_hash, title=spec)


def specs(posts: tuple[PostCreate, ...] | list[PostCreate]) -> list[str]:
    return [post.title or "" for post in posts]


@pytest.mark.parametrize(
    ("incoming", "expected"),
    [
        ([], []),
        (["a:1"], ["a:1"]),
        (["a:1", "b:1", "c:1"], ["a:1", "b:1", "c:1"]),
        (["a:1", "a:2"], ["a:1"]),
        (["a:2", "a:1"], ["a:2"]),
        (["a:1", "b:1", "a:1", "c:1", "b:9"], ["a:1", "b:1", "c:1"]),
        (["b:1", "a:1"], ["b:1", "a:1"]),
        ([":1", ":2"], [":1"]),
    ],
    ids=[
        "empty",
        "one",
        "distinct-keep-order",
        "repeat-first-wins",
        "repeat-first-wins-whatever-the-hash",
        "several-repeats",
        "order-kept",
        "empty-id",
    ],
)
def test_dedupe_posts(incoming: list[str], expected: list[str]) -> None:
    assert specs(dedupe_posts(p(s) for s in incoming)) == expected


@pytest.mark.parametrize(
    ("incoming", "stored", "new", "changed", "unchanged"),
    [
        pytest.param([], {}, [], [], 0, id="nothing"),
        pytest.param([], {"a": "1"}, [], [], 0, id="nothing-incoming"),
        pytest.param(["a:1", "b:1"], {}, ["a:1", "b:1"], [], 0, id="all-new"),
        pytest.param(["a:1", "b:1"], {"a": "1", "b": "1"}, [], [], 2, id="all-unchanged"),
        pytest.param(["a:2"], {"a": "1"}, [], ["a:2"], 0, id="edited"),
        pytest.param(["a:1", "b:2", "c:1"], {"a": "1", "b": "1"}, ["c:1"], ["b:2"], 1, id="mixed"),
        pytest.param(["a:1"], {"b": "1"}, ["a:1"], [], 0, id="stored-others-ignored"),
        pytest.param(["a:2", "a:1"], {"a": "1"}, [], ["a:2"], 0, id="repeat-first-wins-changed"),
        pytest.param(["a:1", "a:2"], {"a": "1"}, [], [], 1, id="repeat-first-wins-unchanged"),
        pytest.param(["a:1", "a:1"], {}, ["a:1"], [], 0, id="repeat-new-once"),
        pytest.param(["A:1"], {"a": "1"}, ["A:1"], [], 0, id="ids-are-case-sensitive"),
        pytest.param(["a:"], {"a": ""}, [], [], 1, id="empty-hash-still-compared"),
    ],
)
def test_plan_upsert(
    incoming: list[str],
    stored: dict[str, str],
    new: list[str],
    changed: list[str],
    unchanged: int,
) -> None:
    plan = plan_upsert([p(s) for s in incoming], stored)
    assert isinstance(plan, UpsertPlan)
    assert (specs(plan.new), specs(plan.changed), plan.unchanged) == (new, changed, unchanged)
    # Every distinct incoming id lands in exactly one bucket.
    distinct = {s.partition(":")[0] for s in incoming}
    assert len(plan.new) + len(plan.changed) + plan.unchanged == len(distinct)
