"""The FetchJob state machine: every statement that creates, moves or removes a job, and the
one table (``MOVES``) that says which moves exist.

    (new) -> QUEUED        the schedule: the next job, written as the previous one ends
    (new) -> ONGOING       a fetch by hand of a source with nothing queued
    QUEUED -> ONGOING      a claim, by a daemon or by hand
    QUEUED -> FAILED       a job refused before it started (its source is gone)
    ONGOING -> COMPLETED   a fetch that ended with a document (or a 304)
    ONGOING -> FAILED      a fetch that failed, was taken back (lease expired, restart) or
                           went stale
    QUEUED -> (removed)    a source changed or disabled: its plan is dropped, not an attempt

Each move is one statement whose WHERE names the statuses it leaves, built from its
``Move`` (so the table and the SQL cannot disagree): a move that is not allowed (a job
completed twice, a FAILED job revived) matches no row and changes nothing. The partial
unique index ``fetch_job_one_active`` refuses a second active job for a source, across
processes too; the inserts say ``ON CONFLICT DO NOTHING`` and so yield to it.

Who calls them: rssd/repo/claims.py (claims, leases, taking back, the schedule's gaps) and
rssd/repo/jobs.py (how a fetch ended), rssd/repo/sources.py (a source's plan dropped).
Nothing else in rssd writes fetch_job's status.
"""

from __future__ import annotations

from msgspec import Struct

from rssd.models.dto import FetchJobStatus
from rssd.repo.dialect import Dialect
from rssd.repo.fragments import failure_run

QUEUED, ONGOING = FetchJobStatus.QUEUED, FetchJobStatus.ONGOING
COMPLETED, FAILED = FetchJobStatus.COMPLETED, FetchJobStatus.FAILED

#: Every allowed move: from a status (None: a new row) to a status (None: the row removed).
MOVES: frozenset[tuple[FetchJobStatus | None, FetchJobStatus | None]] = frozenset(
    {
        (None, QUEUED),
        (None, ONGOING),
        (QUEUED, ONGOING),
        (QUEUED, FAILED),
        (ONGOING, COMPLETED),
        (ONGOING, FAILED),
        (QUEUED, None),
    }
)

ACTIVE = (QUEUED, ONGOING)
FINISHED = (COMPLETED, FAILED)


def can_move(source: FetchJobStatus | None, target: FetchJobStatus | None) -> bool:
    """Whether a job may go from ``source`` to ``target`` (None: new, or removed)."""
    return (source, target) in MOVES


class Move(Struct, frozen=True):
    """One kind of transition: the statuses it leaves (empty: it makes a new row) and the
    one it enters (None: it removes the row)."""

    name: str
    leaves: tuple[FetchJobStatus, ...]
    enters: FetchJobStatus | None

    def __post_init__(self) -> None:
        for source in self.leaves or (None,):
            if not can_move(source, self.enters):
                raise ValueError(f"{self.name}: no move from {source} to {self.enters}")

    @property
    def where(self) -> str:
        """The condition a row must meet to take this move. One status is ``=``, not a
        one-item ``IN``: SQLite uses a partial index (``WHERE status = 'ONGOING'``) only
        for a condition that says the same, so the start-up's take-back scanned every job
        ever kept (34 ms at 120,000 jobs, growing with the history) for a handful."""
        if len(self.leaves) == 1:
            return f"status = '{self.leaves[0].value}'"
        names = ", ".join(f"'{status.value}'" for status in self.leaves)
        return f"status IN ({names})"


QUEUE = Move("queue", (), QUEUED)
START_BY_HAND = Move("start by hand", (), ONGOING)
CLAIM = Move("claim", (QUEUED,), ONGOING)
COMPLETE = Move("complete", (ONGOING,), COMPLETED)
FAIL = Move("fail", (QUEUED, ONGOING), FAILED)
TAKE_BACK = Move("take back", (ONGOING,), FAILED)
UNQUEUE = Move("unqueue", (QUEUED,), None)

#: Every kind of transition rssd makes (what the tests walk).
ALL = (QUEUE, START_BY_HAND, CLAIM, COMPLETE, FAIL, TAKE_BACK, UNQUEUE)

#: The columns a fetch that ended writes beside its status: its HTTP outcome.
_META = (
    "http_status = :http_status, etag = :etag, last_modified = :last_modified, "
    "content_hash = :content_hash, bytes = :bytes, final_url = :final_url"
)

#: The source's run of failures: the backoff of a job queued without a predecessor to
#: carry it.
FAILURE_RUN = failure_run(
    ":source_id",
    "(SELECT max(id) FROM fetch_job WHERE content_source_id = :source_id AND status = 'COMPLETED')",
)

TAKEN_BACK = "taken back: the daemon holding it stopped renewing its lease"
RESTARTED = "the daemon stopped before this job finished"
STALE = "stale: still active long after any fetch could have ended"

# -- (new) -> QUEUED ----------------------------------------------------------------------

#: The source's next job, written in the transaction that ends its previous one, with what
#: the scheduler learned carried on (parameters: ``next_params``). When the source has an
#: active job already (a fetch by hand queued one), that one stands.
QUEUE_NEXT = """
INSERT INTO fetch_job (content_source_id, status, queued_at, not_before, failures, fetch_url,
                       moved_seen, interval_seconds, interval_reason)
VALUES (:source_id, 'QUEUED', :now, :not_before, :failures, :fetch_url, :moved_seen,
        :interval_seconds, :interval_reason)
ON CONFLICT DO NOTHING
"""

#: A job for a source that has none (a new source, a gap the reconciler found), its
#: backoff counted from the source's history. Parameters: source_id, now, not_before.
QUEUE_DUE = (
    "INSERT INTO fetch_job (content_source_id, status, queued_at, not_before, failures) "
    f"VALUES (:source_id, 'QUEUED', :now, :not_before, {FAILURE_RUN}) ON CONFLICT DO NOTHING"
)


class NextJob(Struct, frozen=True):
    """The source's next fetch (decided by rssd.daemon.schedule.plan_next)."""

    not_before: str
    failures: int = 0
    fetch_url: str | None = None
    moved_seen: int = 0
    #: The wait planned before jitter, and why (rssd.daemon.schedule.Reason): for status.
    interval_seconds: float | None = None
    interval_reason: str | None = None


def next_params(source_id: int, next_job: NextJob, now: str) -> dict[str, object]:
    """The parameters of ``QUEUE_NEXT``."""
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


# -- -> ONGOING ---------------------------------------------------------------------------


#: The rows of a claim (``claim_many``): each job and the host slot it takes.
CLAIMED_ROWS = (("job_id", "bigint"), ("c_host", "text"), ("c_slot", "integer"))


def claim_many(dialect: Dialect) -> str:
    """QUEUED -> ONGOING under a lease, each job in its host slot (a daemon's claim, or
    by hand), in one statement for the batch. Parameters: now, daemon, the lease's, and
    jobs, a JSON array of objects with ``CLAIMED_ROWS``' keys (a null host and slot: none
    taken)."""
    rows = dialect.rows_of("jobs", "v", CLAIMED_ROWS)
    return (
        f"UPDATE fetch_job SET status = 'ONGOING', started_at = :now, claimed_by = :daemon, "
        f"lease_expires_at = {dialect.lease_until}, host = v.c_host, host_slot = v.c_slot "
        f"FROM {rows} WHERE id = v.job_id AND {CLAIM.where}"
    )


#: The rows of ``start_many``: each source and the host slot its job takes.
STARTED_ROWS = (("n_source_id", "bigint"), ("c_host", "text"), ("c_slot", "integer"))


def start_many(dialect: Dialect) -> str:
    """A new ONGOING job for each source that has no active one (fetches by hand), in one
    statement; returns the new jobs' ids (a source with an active job gets none).
    Parameters: now, daemon, the lease's, and jobs, a JSON array of objects with
    ``STARTED_ROWS``' keys (a null host and slot: none taken)."""
    rows = dialect.rows_of("jobs", "n", STARTED_ROWS)
    last_success = (
        "(SELECT max(id) FROM fetch_job WHERE content_source_id = n.n_source_id "
        "AND status = 'COMPLETED')"
    )
    # WHERE TRUE: SQLite reads "ON" after a bare FROM as a join's.
    return (
        "INSERT INTO fetch_job (content_source_id, status, queued_at, started_at, claimed_by, "
        "lease_expires_at, failures, host, host_slot) "
        f"SELECT n_source_id, 'ONGOING', {dialect.clock}, {dialect.clock}, :daemon, "
        f"{dialect.lease_until}, {failure_run('n.n_source_id', last_success)}, c_host, c_slot "
        f"FROM {rows} WHERE TRUE ON CONFLICT DO NOTHING RETURNING id"
    )


# -- -> COMPLETED, FAILED -----------------------------------------------------------------


def complete(dialect: Dialect, returning: str) -> str:
    """ONGOING -> COMPLETED with the fetch's outcome. Parameters: id, now, posts_count and
    the ``FetchMeta`` fields."""
    return (
        f"UPDATE fetch_job SET status = 'COMPLETED', ended_at = {dialect.clock}, "
        f"posts_count = :posts_count, {_META} WHERE id = :id AND {COMPLETE.where} "
        f"RETURNING {returning}"
    )


#: The rows of a batch of completions (``complete_many``): the job and what its fetch
#: learned, named apart from fetch_job's own columns (which RETURNING reads).
COMPLETED_ROWS = (
    ("job_id", "bigint"),
    ("m_http_status", "integer"),
    ("m_etag", "text"),
    ("m_last_modified", "text"),
    ("m_content_hash", "text"),
    ("m_bytes", "bigint"),
    ("m_final_url", "text"),
)


def complete_many(dialect: Dialect, returning: str) -> str:
    """ONGOING -> COMPLETED for a batch of jobs that stored no post (a 304, an unchanged
    body), each with its fetch's outcome, in one statement. Parameters: now, and jobs, a
    JSON array of objects with ``COMPLETED_ROWS``' keys."""
    rows = dialect.rows_of("jobs", "v", COMPLETED_ROWS)
    return (
        f"UPDATE fetch_job SET status = 'COMPLETED', ended_at = {dialect.clock}, "
        "posts_count = 0, http_status = v.m_http_status, etag = v.m_etag, "
        "last_modified = v.m_last_modified, content_hash = v.m_content_hash, "
        f"bytes = v.m_bytes, final_url = v.m_final_url FROM {rows} "
        f"WHERE id = v.job_id AND {COMPLETE.where} RETURNING {returning}"
    )


#: The rows of a batch of next jobs (``queue_next_many``): ``next_params`` per source.
NEXT_ROWS = (
    ("n_source_id", "bigint"),
    ("n_not_before", "timestamptz"),
    ("n_failures", "integer"),
    ("n_fetch_url", "text"),
    ("n_moved_seen", "integer"),
    ("n_interval_seconds", "double precision"),
    ("n_interval_reason", "text"),
)


def queue_next_many(dialect: Dialect) -> str:
    """``QUEUE_NEXT`` for a batch of sources in one statement. Parameters: now, and jobs,
    a JSON array of objects with ``NEXT_ROWS``' keys (``next_rows``)."""
    rows = dialect.rows_of("jobs", "n", NEXT_ROWS)
    # WHERE TRUE: SQLite reads "ON" after a bare FROM as a join's.
    return (
        "INSERT INTO fetch_job (content_source_id, status, queued_at, not_before, failures, "
        "fetch_url, moved_seen, interval_seconds, interval_reason) "
        f"SELECT n_source_id, 'QUEUED', {dialect.clock}, n_not_before, n_failures, n_fetch_url, "
        f"n_moved_seen, n_interval_seconds, n_interval_reason FROM {rows} "
        "WHERE TRUE ON CONFLICT DO NOTHING"
    )


def next_row(source_id: int, next_job: NextJob) -> dict[str, object]:
    """One source's row of ``queue_next_many``."""
    return {
        "n_source_id": source_id,
        "n_not_before": next_job.not_before,
        "n_failures": next_job.failures,
        "n_fetch_url": next_job.fetch_url,
        "n_moved_seen": next_job.moved_seen,
        "n_interval_seconds": next_job.interval_seconds,
        "n_interval_reason": next_job.interval_reason,
    }


def fail(dialect: Dialect, returning: str) -> str:
    """QUEUED or ONGOING -> FAILED with the reason and what the fetch learned. Parameters:
    id, now, error_code, error_message and the ``FetchMeta`` fields."""
    return (
        f"UPDATE fetch_job SET status = 'FAILED', ended_at = {dialect.clock}, "
        f"error_code = :error_code, error_message = :error_message, {_META} "
        f"WHERE id = :id AND {FAIL.where} RETURNING {returning}"
    )


def take_back(dialect: Dialect, *, everything: bool, leased: bool = False) -> str:
    """ONGOING jobs whose lease expired (``everything``: all of them, a restart on SQLite)
    -> FAILED ``interrupted``; returns what their next job carries on. A job with no lease
    counts as expired (no daemon renews it), unless ``leased``. Parameters: now, message."""
    run_out = f"lease_expires_at < {dialect.clock}"
    expired = f" AND {run_out}" if leased else f" AND (lease_expires_at IS NULL OR {run_out})"
    return (
        "UPDATE fetch_job SET status = 'FAILED', ended_at = :now, error_code = 'interrupted', "
        f"error_message = :message WHERE {TAKE_BACK.where}{'' if everything else expired} "
        "RETURNING id, content_source_id, failures, fetch_url, moved_seen"
    )


def fail_stale(dialect: Dialect) -> str:
    """The source's ONGOING job -> FAILED ``internal`` if it started before ``:cutoff`` and
    no daemon's lease on it is current. Parameters: source_id, cutoff, now, message."""
    clock = dialect.clock
    return (
        f"UPDATE fetch_job SET status = 'FAILED', ended_at = {clock}, error_code = 'internal', "
        f"error_message = :message WHERE content_source_id = :source_id AND {TAKE_BACK.where} "
        "AND coalesce(started_at, queued_at) < :cutoff "
        f"AND (lease_expires_at IS NULL OR lease_expires_at < {clock}) RETURNING id"
    )


# -- QUEUED -> (removed) ------------------------------------------------------------------

#: A changed or disabled source's plan, made under its old settings, dropped so that the
#: scheduler plans it again. Parameters: url.
UNQUEUE_SOURCE = (
    f"DELETE FROM fetch_job WHERE {UNQUEUE.where} AND content_source_id = "
    "(SELECT id FROM content_sources WHERE url = :url)"
)
