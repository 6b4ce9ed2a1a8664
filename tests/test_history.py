"""history_of: the scheduler's view of a source, derived from its latest job only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rssd.daemon.history import history_of
from rssd.daemon.schedule import History
from rssd.models.dto import ErrorCode, FetchJobStatus, LatestJob

ENDED = "2026-11-29T10:00:00.000Z"
ENDED_AT = datetime(2026, 11, 29, 10, tzinfo=UTC)


def latest(
    *,
    status: FetchJobStatus | None = FetchJobStatus.COMPLETED,
    error: ErrorCode | None = None,
    failures: int = 0,
    source_updated_at: str = "2026-11-01T00:00:00.000Z",
    ended_at: str | None = ENDED,
) -> LatestJob:
    return LatestJob(
        source_id=1,
        source_updated_at=source_updated_at,
        job_id=None if status is None else 7,
        status=status,
        ended_at=ended_at,
        error_code=error,
        http_status=None,
        failures=failures,
        last_success_at=None,
    )


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (latest(status=None, ended_at=None), History()),
        (latest(), History(ended_at=ENDED_AT)),
        (
            latest(status=FetchJobStatus.FAILED, error=ErrorCode.TIMEOUT, failures=3),
            History(ended_at=ENDED_AT, failures=3),
        ),
        (
            latest(status=FetchJobStatus.FAILED, error=ErrorCode.INTERRUPTED, failures=2),
            History(ended_at=ENDED_AT, failures=2, interrupted=True),
        ),
        # 410 and the config entry unchanged since: gone.
        (
            latest(status=FetchJobStatus.FAILED, error=ErrorCode.GONE, failures=1),
            History(ended_at=ENDED_AT, failures=1, gone=True),
        ),
        # 410, but the operator changed the entry afterwards: due again.
        (
            latest(
                status=FetchJobStatus.FAILED,
                error=ErrorCode.GONE,
                failures=1,
                source_updated_at="2026-11-29T11:00:00.000Z",
            ),
            History(ended_at=ENDED_AT, failures=1),
        ),
        # Still running (another process): not ended, treated as never fetched for now.
        (latest(status=FetchJobStatus.ONGOING, ended_at=None), History()),
    ],
)
def test_history_of(row: LatestJob, expected: History) -> None:
    assert history_of(row) == expected
