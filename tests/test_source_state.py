"""classify(): the one rule for a source's state, which ``rssd status`` and the
``rssd_sources`` gauge both use (they once disagreed on a source only ever interrupted)."""

from __future__ import annotations

import pytest

from rssd.daemon.history import history_of
from rssd.models.codes import ErrorCode
from rssd.models.dto import FetchJobStatus, LatestJob
from rssd.models.source_state import State, classify

T0, T1 = "2026-01-01T00:00:00.000Z", "2026-01-02T00:00:00.000Z"


@pytest.mark.parametrize(
    ("enabled", "gone", "failures", "succeeded", "state"),
    [
        (True, False, 0, True, State.OK),
        (True, False, 0, False, State.NEVER_FETCHED),
        (True, False, 2, True, State.FAILING),
        (True, False, 1, False, State.FAILING),
        (True, True, 1, True, State.GONE),
        (False, True, 3, True, State.DISABLED),
        (False, False, 0, False, State.DISABLED),
    ],
)
def test_classify(enabled: bool, gone: bool, failures: int, succeeded: bool, state: State) -> None:
    assert classify(enabled=enabled, gone=gone, failures=failures, succeeded=succeeded) is state


def latest(
    error_code: ErrorCode | None, *, failures: int = 0, last_success_at: str | None = None
) -> LatestJob:
    status = FetchJobStatus.FAILED if error_code else FetchJobStatus.COMPLETED
    return LatestJob(1, T0, 7, status, T1, error_code, None, failures, last_success_at)


@pytest.mark.parametrize(
    ("job", "state"),
    [
        # Only ever interrupted by the daemon stopping: not fetched yet, and not failing.
        (latest(ErrorCode.INTERRUPTED), State.NEVER_FETCHED),
        (latest(ErrorCode.INTERRUPTED, last_success_at=T0), State.OK),
        (latest(None, last_success_at=T1), State.OK),
        (latest(ErrorCode.TIMEOUT, failures=1), State.FAILING),
        (latest(ErrorCode.GONE, failures=1, last_success_at=T0), State.GONE),
    ],
    ids=["interrupted-only", "interrupted-after-success", "ok", "failing", "gone"],
)
def test_a_latest_job_classifies_as_status_and_the_gauge_say(job: LatestJob, state: State) -> None:
    """The gauge's input (a LatestJob) through history_of, as the daemon reads it."""
    history = history_of(job)
    found = classify(
        enabled=True,
        gone=history.gone,
        failures=job.failures,
        succeeded=job.last_success_at is not None,
    )
    assert found is state
