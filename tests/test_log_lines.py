"""What one log line carries, through the processors rssd configures: credentials masked in
any field, long strings cut, a traceback trimmed, everything else as given, and a line that
stays under journald's limit whatever the fields."""

from __future__ import annotations

import io
import json
from enum import IntEnum, StrEnum
from pathlib import PurePosixPath
from typing import Any

import pytest
from yarl import URL

from rssd import logs
from rssd.logs import MAX_FIELD_CHARS, MAX_LINE_CHARS


class _Kind(StrEnum):
    FEED = "feed"


class _Level(IntEnum):
    HIGH = 3


def _line(**fields: Any) -> dict[str, Any]:
    stream = io.StringIO()
    logs.configure("info", stream=stream)
    logs.get_logger("rssd.test_log_lines").info("test.event", **fields)
    (line,) = stream.getvalue().splitlines()
    event: dict[str, Any] = json.loads(line)
    return event


LONG = "x" * (MAX_FIELD_CHARS + 10)
SECRET_URL = "https://alice:s3cret@example.org/feed"
MASKED_LONG = "https://alice:***@example.org/feed" + LONG


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (42, 42),
        (1.5, 1.5),
        (True, True),
        (None, None),
        ("plain", "plain"),
        ("a=b&c=d", "a=b&c=d"),  # "=" looks for a password= parameter, finds none
        (_Kind.FEED, "feed"),
        (SECRET_URL, "https://alice:***@example.org/feed"),
        (
            "fetch of https://bob:pw@h.example/x failed",
            "fetch of https://bob:***@h.example/x failed",
        ),
        # A user name alone may be a token: masked too.
        ("postgresql://u@db/rssd?password=hunter2", "postgresql://***@db/rssd?password=***"),
        (LONG, "x" * MAX_FIELD_CHARS + "...[10 more]"),
        # Masked first, then cut: the cut never leaves half a password readable.
        (
            SECRET_URL + LONG,
            MASKED_LONG[:MAX_FIELD_CHARS] + f"...[{len(MASKED_LONG) - MAX_FIELD_CHARS} more]",
        ),
        ([SECRET_URL, 1], ["https://alice:***@example.org/feed", 1]),
        ((SECRET_URL,), ["https://alice:***@example.org/feed"]),
        ({"url": SECRET_URL, "n": 2}, {"url": "https://alice:***@example.org/feed", "n": 2}),
        (
            {"deep": [{"url": SECRET_URL}]},
            {"deep": [{"url": "https://alice:***@example.org/feed"}]},
        ),
        # What JSON has no form for is written as its repr, masked and cut as text is.
        (_Level.HIGH, 3),
        (PurePosixPath("/var/lib/rssd"), "PurePosixPath('/var/lib/rssd')"),
        (URL(SECRET_URL), "URL('https://alice:***@example.org/feed')"),
        (
            ValueError(f"fetch of {SECRET_URL}"),
            "ValueError('fetch of https://alice:***@example.org/feed')",
        ),
        ({SECRET_URL}, "{'https://alice:***@example.org/feed'}"),
        ([URL(SECRET_URL)], ["URL('https://alice:***@example.org/feed')"]),
        # Below four levels, a container is written as its masked repr.
        ([[[[[SECRET_URL]]]]], [[[["['https://alice:***@example.org/feed']"]]]]),
    ],
)
def test_a_field_is_masked_and_cut_as_needed(value: object, expected: object) -> None:
    assert _line(field=value)["field"] == expected


def test_the_line_starts_with_the_fields_a_reader_scans() -> None:
    event = _line(source_id=1, url=SECRET_URL)
    assert list(event)[:4] == ["timestamp", "level", "message", "logger"]
    assert event["message"] == "test.event"
    assert event["level"] == "info"


def test_a_traceback_keeps_its_innermost_exceptions_and_frames() -> None:
    frames = [{"filename": f"f{n}.py", "lineno": n} for n in range(30)]
    chain = [{"exc_type": f"E{n}", "frames": frames} for n in range(5)]
    event = _line(exception=chain)
    assert [item["exc_type"] for item in event["exception"]] == ["E2", "E3", "E4"]
    assert all(item["frames"] == frames[-12:] for item in event["exception"])


def test_a_line_of_many_long_fields_stays_under_the_limit() -> None:
    event = _line(**{f"field_{n}": LONG for n in range(20)})
    assert set(event) == {"timestamp", "level", "message", "logger", "truncated_line"}
    assert len(json.dumps(event)) < MAX_LINE_CHARS
