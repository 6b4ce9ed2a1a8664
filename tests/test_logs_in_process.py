"""Logging configured more than once in one process, as the tests do by running commands
in-process: the loggers modules hold keep reaching ``structlog.testing.capture_logs``, and
``logs.kept`` undoes a command's level (tests/conftest.py wraps every test in it)."""

from __future__ import annotations

import io

from structlog.testing import capture_logs

from rssd import logs


def test_a_logger_used_before_a_second_configure_is_still_captured() -> None:
    log = logs.get_logger("rssd.test_logs")
    logs.configure("info", stream=io.StringIO())
    log.info("first")  # cached now, with the processors of this moment
    logs.configure("info", stream=io.StringIO())  # e.g. the next in-process command
    with capture_logs() as captured:
        log.info("second")
    assert [event["event"] for event in captured] == ["second"]


def test_kept_undoes_a_commands_level() -> None:
    log = logs.get_logger("rssd.test_logs")
    logs.configure("info", stream=io.StringIO())
    with logs.kept():
        logs.configure("error", stream=io.StringIO())  # what `rssd fetch` sets
        with capture_logs() as hidden:
            log.warning("during")
    with capture_logs() as captured:
        log.warning("after")
    assert hidden == []
    assert [event["event"] for event in captured] == ["after"]
