"""The source's next QUEUED job: the schedule's one write, shared by every way a job ends.

Written in the transaction that ends the previous job (completed, failed, taken back), so
a source always has its next fetch on record, with what the scheduler learned carried on:
the run of failures (backoff), a permanent redirect (``fetch_url``, ``moved_seen``).
``ON CONFLICT DO NOTHING``: when the source has an active job already (a manual fetch
queued one), that one stands.
"""

from __future__ import annotations

from dataclasses import dataclass

INSERT_NEXT = """
INSERT INTO fetch_job (content_source_id, status, queued_at, not_before, failures, fetch_url,
                       moved_seen, interval_seconds, interval_reason)
VALUES (:source_id, 'QUEUED', :now, :not_before, :failures, :fetch_url, :moved_seen,
        :interval_seconds, :interval_reason)
ON CONFLICT DO NOTHING
"""


@dataclass(frozen=True)
class NextJob:
    """The source's next fetch (decided by rssd.daemon.schedule.plan_next)."""

    not_before: str
    failures: int = 0
    fetch_url: str | None = None
    moved_seen: int = 0
    #: The wait planned before jitter, and why (rssd.daemon.schedule.Reason): for status.
    interval_seconds: float | None = None
    interval_reason: str | None = None


def insert_next_params(source_id: int, next_job: NextJob, now: str) -> dict[str, object]:
    return {
        "source_id": source_id,
        "now": now,
        "not_before": next_job.not_before,
        "failures": next_job.failures,
        "fetch_url": next_job.fetch_url,
        "moved_seen": next_job.moved_seen,
        "interval_seconds": next_job.interval_seconds,
        "interval_reason": next_job.interval_reason,
    }
