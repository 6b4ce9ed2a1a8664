"""The scheduler's view of a source from its latest job: shared by the daemon and by
``rssd status`` (which must not import the daemon's fetching machinery to start fast)."""

from __future__ import annotations

from rssd.clock import parse_iso
from rssd.daemon.schedule import History
from rssd.models.codes import ErrorCode
from rssd.models.dto import LatestJob


def history_of(latest: LatestJob) -> History:
    """The scheduler's view of a source, from its latest job (the single source of truth)."""
    if latest.job_id is None or latest.ended_at is None:
        return History()
    gone = latest.error_code is ErrorCode.GONE and latest.source_updated_at <= latest.ended_at
    return History(
        ended_at=parse_iso(latest.ended_at),
        failures=latest.failures,
        interrupted=latest.error_code is ErrorCode.INTERRUPTED,
        gone=gone,
    )
