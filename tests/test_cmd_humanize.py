"""Relative times and column alignment of the operator commands' human output."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rssd.commands.humanize import ago, due, shorten, table

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (timedelta(0), "just now"),
        (timedelta(seconds=-12), "12s ago"),
        (timedelta(minutes=-3, seconds=-50), "4m ago"),
        (timedelta(seconds=-59.6), "1m ago"),
        (timedelta(hours=1, minutes=59), "in 2h"),
        (timedelta(hours=-2), "2h ago"),
        (timedelta(hours=-47), "47h ago"),
        (timedelta(hours=-47, minutes=-40), "2d ago"),
        (timedelta(days=-3), "3d ago"),
        (timedelta(seconds=5), "in 5s"),
        (timedelta(hours=2, minutes=30), "in 2h"),
    ],
)
def test_ago(offset: timedelta, expected: str) -> None:
    assert ago(NOW + offset, NOW) == expected


def test_ago_and_due_of_nothing() -> None:
    assert ago(None, NOW) == "-"
    assert due(None, NOW) == "-"


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(timedelta(minutes=-5), "now"), (timedelta(0), "now"), (timedelta(minutes=57), "in 57m")],
)
def test_due(offset: timedelta, expected: str) -> None:
    assert due(NOW + offset, NOW) == expected


def test_shorten() -> None:
    assert shorten("a  b\nc", 10) == "a b c"
    assert shorten("abcdefghijkl", 5) == "abcd…"


def test_table_aligns_columns_and_right_aligns_numbers() -> None:
    lines = table(
        ["ID", "NAME", "URL"], [["1", "a", "http://x"], ["12", "long name", "u"]], right=(0,)
    )
    assert lines == [
        "ID  NAME       URL",
        " 1  a          http://x",
        "12  long name  u",
    ]
