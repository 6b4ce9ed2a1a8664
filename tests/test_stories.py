"""The keys that make two posts one story (pure)."""

from __future__ import annotations

import pytest

from rssd.models.stories import Skip, duplicates, link_key, story_keys


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://news.example/a/b", "link:news.example/a/b"),
        ("http://WWW.News.Example:80/a/b/#c", "link:news.example/a/b"),
        (
            "https://news.example:443/a?utm_source=x&id=3&fbclid=y&b=1",
            "link:news.example/a?b=1&id=3",
        ),
        ("https://news.example:8443/a", "link:news.example:8443/a"),
        ("https://news.example", "link:news.example/"),
        ("https://news.example/A", "link:news.example/A"),  # paths keep their case
        ("ftp://news.example/a", None),
        ("", None),
        (None, None),
        ("https://[::1/a", None),
    ],
)
def test_link_key(url: str | None, key: str | None) -> None:
    assert link_key(url) == key


def test_story_keys_and_duplicates() -> None:
    assert story_keys("g1", "https://n.example/1") == ("link:n.example/1", "guid:g1")
    assert story_keys("g1", None) == ("guid:g1",)
    told = {"link:n.example/1": 10, "guid:g2": 20}
    posts = [
        (1, story_keys("x", "https://n.example/1")),
        (2, story_keys("g2", "https://other.example/2")),
        (3, story_keys("g3", "https://n.example/3")),
    ]
    assert duplicates(posts, told) == [Skip(1, "link:n.example/1", 10), Skip(2, "guid:g2", 20)]
