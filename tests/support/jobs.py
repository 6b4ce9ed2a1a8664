"""Fetch jobs for a test's set-up, made through rssd's own transitions: the schedule's
insert (``ClaimRepo.queue_missing``) and a claim by hand (``ClaimRepo.claim_source``), so
that no test depends on a path the daemon never takes. Plus two plain reads."""

from __future__ import annotations

from rssd.clock import now_iso
from rssd.models.dto import FetchJob, FetchJobStatus
from rssd.repo.claims import ClaimRepo
from rssd.repo.db import Database
from rssd.repo.rows import JOB_COLUMNS, job_from

#: The daemon id the tests' claims are made under.
TESTER = "tests"


async def get(db: Database, job_id: int) -> FetchJob | None:
    row = await db.fetchone(f"SELECT {JOB_COLUMNS} FROM fetch_job WHERE id = :id", {"id": job_id})
    return job_from(row) if row is not None else None


async def latest_for_source(db: Database, source_id: int) -> FetchJob | None:
    """The source's newest job, whatever its status (its QUEUED job when it has one)."""
    row = await db.fetchone(
        f"SELECT {JOB_COLUMNS} FROM fetch_job WHERE content_source_id = :source_id "
        f"ORDER BY id DESC LIMIT 1",
        {"source_id": source_id},
    )
    return job_from(row) if row is not None else None


async def queue_job(db: Database, source_id: int) -> FetchJob | None:
    """A QUEUED job due now, or None while the source has an active job."""
    if not await ClaimRepo(db, TESTER).queue_missing({source_id: now_iso()}):
        return None
    return await latest_for_source(db, source_id)


async def claim_job(db: Database, job_id: int) -> FetchJob | None:
    """QUEUED -> ONGOING, as a fetch by hand claims it (under a lease); None when the job
    is not QUEUED."""
    job = await get(db, job_id)
    if job is None or job.status is not FetchJobStatus.QUEUED:
        return None
    claim = await ClaimRepo(db, TESTER).claim_source(job.content_source_id)
    return claim.job if claim is not None else None


async def ongoing_job(db: Database, source_id: int) -> FetchJob:
    """The source's job, claimed and ONGOING now: what a fetch in progress holds."""
    claim = await ClaimRepo(db, TESTER).claim_source(source_id)
    assert claim is not None, f"source {source_id} has an ONGOING job already"
    return claim.job


async def recover(db: Database) -> list[int]:
    """Start-up recovery as the daemon does it on SQLite: every ONGOING job -> FAILED
    ``interrupted`` (QUEUED jobs stay: they are the schedule)."""
    return await ClaimRepo(db, TESTER).take_back(everything=True)
