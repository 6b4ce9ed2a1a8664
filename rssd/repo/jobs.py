"""FetchJobRepo: how a fetch ended (ONGOING -> COMPLETED or FAILED, with what it stored),
stale jobs, pruning and the reads of jobs. The transitions themselves, and the table of
which are allowed, are in rssd/repo/transitions.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from msgspec import Struct
from msgspec.structs import replace

from rssd.batching import Batcher
from rssd.clock import now_iso, to_iso
from rssd.models.dto import (
    ErrorCode,
    FetchJob,
    FetchJobStatus,
    FetchMeta,
    LatestJob,
    PostCreate,
)
from rssd.repo import transitions
from rssd.repo.db import Database, Row, Tx, write_in_batches
from rssd.repo.fragments import failure_run
from rssd.repo.outbox import write_outbox_in
from rssd.repo.posts import UpsertCounts, upsert_in
from rssd.repo.rows import JOB_COLUMNS as _COLUMNS
from rssd.repo.rows import job_from
from rssd.repo.seen import seen_saving
from rssd.repo.sources import set_feed_title_in
from rssd.repo.transitions import QUEUE_NEXT, NextJob, next_params

MAX_ERROR_MESSAGE = 2000

#: Finished jobs older than :cutoff, except each source's latest finished and latest
#: COMPLETED job (its state and its validators). Shared by prune and by ``rssd prune
#: --dry-run``.
PRUNABLE = """
WHERE status IN ('COMPLETED', 'FAILED') AND ended_at < :cutoff
  AND id NOT IN (SELECT max(id) FROM fetch_job WHERE status IN ('COMPLETED', 'FAILED')
                 GROUP BY content_source_id)
  AND id NOT IN (SELECT max(id) FROM fetch_job WHERE status = 'COMPLETED'
                 GROUP BY content_source_id)
"""


#: FetchMeta's fields: its columns on fetch_job.
_META_FIELDS: tuple[str, ...] = FetchMeta.__struct_fields__


def _meta_params(meta: FetchMeta) -> dict[str, object]:
    """``meta``'s fields as statement parameters. Not ``asdict``, which deep-copies every
    value: it was a fifth of the database writer's CPU in an all-304 pass."""
    return {name: getattr(meta, name) for name in _META_FIELDS}


def _job(row: Row | None) -> FetchJob | None:
    return job_from(row) if row is not None else None


#: A job's validators: its etag, last_modified and content_hash (``latest_validators``).
ValidatorValues = tuple[str | None, str | None, str | None]

#: The most completions written in one statement.
MAX_COMPLETIONS = 200
#: How long a completion waits for others to share its transaction, when fewer than
#: COMPLETION_FEW are asked. Fetches end one by one, so without it a batch held two or
#: three; at 10 ms, an all-304 pass of 2,000 feeds spent 13% less CPU for 2% more time
#: (bench/README.md). A host's slot is free only once its completion is written, so a
#: longer wait slows the fetches waiting for that slot.
COMPLETION_LINGER = 0.01
COMPLETION_FEW = 16


class _Done(Struct, frozen=True):
    """A completion that stores no post: the job, what its fetch learned, its next job."""

    job_id: int
    meta: FetchMeta
    next_job: NextJob | None


#: What a completion that stores posts returns: the job and what its posts came to.
Stored = tuple[FetchJob, UpsertCounts]


class _Store(Struct, frozen=True):
    """A completion that stores posts (a changed feed): its whole transaction, which goes
    in the same commit as the completions asked meanwhile, with the other stores of the
    batch (``FetchJobRepo._store_together``). It may run twice: the first time rolled back."""

    work: Callable[[Tx], Awaitable[Stored | None]]


async def _complete_in(tx: Tx, batch: Sequence[_Done]) -> list[FetchJob | None]:
    """ONGOING -> COMPLETED for each job of ``batch`` still ONGOING (the others: None),
    and the next job of each completed one."""
    now = to_iso(await tx.now())
    first: dict[int, _Done] = {}
    for done in batch:  # a job completed twice in one batch: the second finds it ended
        first.setdefault(done.job_id, done)
    rows = [
        {"job_id": d.job_id, **{f"m_{k}": v for k, v in _meta_params(d.meta).items()}}
        for d in first.values()
    ]
    ended = await tx.fetchall(
        transitions.complete_many(tx.dialect, _COLUMNS), {"now": now, "jobs": json.dumps(rows)}
    )
    jobs = {job.id: job for job in map(job_from, ended)}
    following = [
        transitions.next_row(jobs[d.job_id].content_source_id, d.next_job)
        for d in first.values()
        if d.next_job is not None and d.job_id in jobs
    ]
    if following:
        await tx.execute(
            transitions.queue_next_many(tx.dialect), {"now": now, "jobs": json.dumps(following)}
        )
    return [jobs.get(d.job_id) if first[d.job_id] is d else None for d in batch]


async def _all_of(stores: Sequence[_Store], tx: Tx) -> list[Stored | None]:
    """Each store's work in turn, in one transaction."""
    return [await store.work(tx) for store in stores]


class FetchJobRepo:
    def __init__(self, db: Database) -> None:
        self._db = db
        #: Completions, batched: those made while a batch is in the database go as the
        #: next, one commit for all. Those without posts (304s, unchanged bodies: most of
        #: them) are two statements for all; those that store posts, one more write
        #: (``_store_together``).
        self._completions: Batcher[_Done | _Store, FetchJob | Stored | None] = Batcher(
            self._complete_batch,
            MAX_COMPLETIONS,
            linger=COMPLETION_LINGER,
            few=COMPLETION_FEW,
            hold=db.hold_writes,
        )

    async def settle(self) -> None:
        """Until the batch of completions in the database, if any, is answered: before the
        database is closed, so a stop leaves no finished fetch ONGOING."""
        await self._completions.settle()

    async def mark_completed(
        self,
        job_id: int,
        meta: FetchMeta,
        posts: Sequence[PostCreate] = (),
        seen_items: bytes | None = None,
        next_job: NextJob | None = None,
        *,
        feed_title: str | None = None,
    ) -> tuple[FetchJob, UpsertCounts] | None:
        """ONGOING -> COMPLETED, writing the posts in the same transaction: both or neither.

        ``seen_items``: the item fingerprints of the document these posts came from, stored
        in the same transaction (None: a 304 or an unparsed body, the stored ones stand).
        ``next_job``: the source's next fetch, queued in the same transaction too (the
        schedule lives in the database, rssd/repo/claims.py).

        The webhook messages announcing the new posts go into the outbox in the same
        transaction too (a 304 or an unchanged body has nothing new to announce), after
        ``feed_title`` (a title the feed gave that differs from the stored one), so that a
        feed's first messages carry its name.

        Returns None (and writes no post) when the job is no longer ONGOING, e.g. because a
        restart already recorded it as interrupted.
        """

        if not posts and seen_items is None and feed_title is None:
            job = await self._completions.ask(_Done(job_id, meta, next_job))
            assert not isinstance(job, tuple)
            return (job, UpsertCounts(0, 0)) if job else None
        params = {"id": job_id, **_meta_params(meta)}
        complete = transitions.complete(self._db.dialect, _COLUMNS)

        async def work(tx: Tx) -> Stored | None:
            now = to_iso(await tx.now())
            job = _job(await tx.fetchone(complete, {**params, "now": now, "posts_count": 0}))
            if job is None:
                return None  # not ONGOING: nothing was written, nothing will be
            counts = await upsert_in(tx, job.content_source_id, job_id, posts)
            if feed_title is not None:
                await set_feed_title_in(tx, job.content_source_id, feed_title)
            # Writes that need no answer go with the outbox's first statement: on
            # PostgreSQL one round trip, not three, for each changed feed.
            writes: list[str] = []
            written: dict[str, object] = {}
            if seen_items is not None:
                statement, seen_params = seen_saving(job.content_source_id, seen_items)
                writes.append(statement)
                written |= seen_params
            if counts.new:
                writes.append("UPDATE fetch_job SET posts_count = :new WHERE id = :id")
                written |= {"new": counts.new, "id": job_id}
            messages = await write_outbox_in(
                tx, job.content_source_id, job_id, counts.new_posts, writes=writes, params=written
            )
            counts = replace(counts, new_posts=(), messages=messages)
            if next_job is not None:
                await tx.execute(QUEUE_NEXT, next_params(job.content_source_id, next_job, now))
            return replace(job, posts_count=counts.new), counts

        if not self._completions.forming:
            # Nothing to join: at once. A store that waited for the batch in the database
            # and then lingered kept the writer idle meanwhile, where stores come one
            # after another (a cold pass: every completion stores posts).
            return await self._db.write(work)
        # With the completions waiting to go: a changed feed's store alone was a commit of
        # its own, a fifth more commits in a pass with 10% of the feeds changed.
        stored = await self._completions.ask(_Store(work))
        assert stored is None or isinstance(stored, tuple)
        return stored

    async def _complete_batch(
        self, batch: Sequence[_Done | _Store]
    ) -> list[FetchJob | Stored | Exception | None]:
        """A batch of completions as one commit: those without posts as one write, the
        stores as another (``_store_together``). The writes are queued together, so the
        writer commits them together, each in its savepoint (rssd/repo/group_commit.py)."""
        plain = [done for done in batch if isinstance(done, _Done)]
        stores = [s for s in batch if isinstance(s, _Store)]
        # Both started in the same turn of the loop, each one hand-off from its write (a
        # task started a turn before the other had its write committed alone, under load).
        done_answers: list[FetchJob | Exception | None] = []
        stored_answers: list[Stored | Exception | None] = []
        if plain and stores:
            done_answers, stored_answers = await asyncio.gather(
                self._plain_answers(plain), self._store_together(stores)
            )
        elif plain:
            done_answers = await self._plain_answers(plain)
        else:
            stored_answers = await self._store_together(stores)
        stored = iter(stored_answers)
        by_done = iter(done_answers)
        results: list[FetchJob | Stored | Exception | None] = []
        for item in batch:
            if isinstance(item, _Done):
                results.append(next(by_done))
                continue
            results.append(next(stored))
        return results

    async def _plain_answers(self, plain: Sequence[_Done]) -> list[FetchJob | Exception | None]:
        """``_complete_plain``'s answers; refused as a whole (one completion): its error."""
        try:
            return await self._complete_plain(plain)
        except Exception as exc:
            return [exc]

    async def _store_together(self, stores: Sequence[_Store]) -> list[Stored | Exception | None]:
        """The stores of a batch as one write, one after the other; if it fails, each as a
        write of its own (in one commit, a savepoint each), so that a bad one fails alone.

        One write, not a savepoint each: FTS5 writes what it was given out as an index
        segment of its own at every savepoint, and a changed feed's few new posts as a
        segment of their own cost more than the posts (bench/README.md)."""
        try:  # one store alone too: one hand-off, as the batch's plain write (above)
            return list(await self._db.write(partial(_all_of, stores)))
        except Exception as exc:
            if len(stores) == 1:
                return [exc]  # it was alone: that is its answer
            # each alone, below, says which one failed and why
        answers = await asyncio.gather(
            *(self._db.write(s.work) for s in stores), return_exceptions=True
        )
        results: list[Stored | Exception | None] = []
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                raise answer  # cancelled
            results.append(answer)
        return results

    async def _complete_plain(self, batch: Sequence[_Done]) -> list[FetchJob | Exception | None]:
        """Completions without posts in one write; if it fails, each alone, so that one bad
        completion fails alone (as each write of a group commit)."""
        try:
            return list(await self._db.write(lambda tx: _complete_in(tx, batch)))
        except Exception:
            if len(batch) == 1:
                raise
        answers: list[FetchJob | Exception | None] = []
        for done in batch:
            try:
                (job,) = await self._db.write(partial(_complete_in, batch=[done]))
                answers.append(job)
            except Exception as exc:
                answers.append(exc)
        return answers

    async def mark_failed(
        self,
        job_id: int,
        error_code: ErrorCode,
        error_message: str,
        meta: FetchMeta | None = None,
        next_job: NextJob | None = None,
    ) -> FetchJob | None:
        """QUEUED or ONGOING -> FAILED, with the reason; ``next_job`` queued with it.
        None (and nothing queued) when the job had ended already."""
        sql = transitions.fail(self._db.dialect, _COLUMNS)
        params = {
            "id": job_id,
            "error_code": error_code.value,
            "error_message": error_message[:MAX_ERROR_MESSAGE],
            **_meta_params(meta or FetchMeta()),
        }
        if next_job is None:
            rows = await self._db.write_one(sql, {**params, "now": now_iso()})
            return _job(rows[0]) if rows else None

        async def work(tx: Tx) -> FetchJob | None:
            now = to_iso(await tx.now())
            job = _job(await tx.fetchone(sql, {**params, "now": now}))
            if job is not None:
                await tx.execute(QUEUE_NEXT, next_params(job.content_source_id, next_job, now))
            return job

        return await self._db.write(work)

    async def get_status(self, job_id: int) -> FetchJobStatus | None:
        row = await self._db.fetchone("SELECT status FROM fetch_job WHERE id = :id", {"id": job_id})
        return FetchJobStatus(row["status"]) if row else None

    async def get_latest_completed(self, source_id: int) -> FetchJob | None:
        """The newest COMPLETED job: where the conditional-GET validators come from."""
        return _job(
            await self._db.fetchone(
                f"SELECT {_COLUMNS} FROM fetch_job WHERE content_source_id = :source_id "
                f"AND status = 'COMPLETED' ORDER BY id DESC LIMIT 1",
                {"source_id": source_id},
            )
        )

    async def latest_validators(self) -> dict[int, ValidatorValues]:
        """Every source's newest COMPLETED job's (etag, last_modified, content_hash) in one
        query: the validators for a whole run. Only those three columns, as tuples: reading
        whole FetchJobs took 15 ms of CPU at 2,000 feeds, this 7 (bench/README.md)."""
        rows = await self._db.fetchall(
            "SELECT content_source_id, etag, last_modified, content_hash FROM fetch_job "
            "WHERE id IN (SELECT (SELECT id FROM fetch_job WHERE content_source_id = s.id "
            "AND status = 'COMPLETED' ORDER BY id DESC LIMIT 1) FROM content_sources s)"
        )
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    async def fail_stale(self, source_id: int, queued_before: str) -> int:
        """Fail the source's ONGOING job if it started before ``queued_before`` and no
        daemon's lease on it is current."""
        rows = await self._db.write_one(
            transitions.fail_stale(self._db.dialect),
            {
                "source_id": source_id,
                "cutoff": queued_before,
                "now": now_iso(),
                "message": transitions.STALE,
            },
        )
        return len(rows)

    async def count_prunable(self, older_than: str) -> int:
        """How many jobs ``prune(older_than)`` would delete now (``rssd prune --dry-run``)."""
        row = await self._db.fetchone(
            f"SELECT count(*) FROM fetch_job {PRUNABLE}", {"cutoff": older_than}
        )
        return int(row[0]) if row else 0

    async def prune(self, older_than: str, batch: int = 2000) -> int:
        """Delete finished jobs that ended before ``older_than``, in short batches.

        Each source's latest job and latest COMPLETED job (its validators) are always kept.
        """
        sql = (
            f"DELETE FROM fetch_job WHERE id IN (SELECT id FROM fetch_job {PRUNABLE} LIMIT :batch)"
        )
        return await write_in_batches(
            self._db, lambda tx: tx.execute(sql, {"cutoff": older_than, "batch": batch}), batch
        )


#: A source's latest *finished* job: a QUEUED job is the schedule, an ONGOING one has no
#: outcome yet; the scheduler plans from the one before them.
_LATEST = """
WITH heads AS (
    SELECT s.id AS source_id, s.updated_at AS source_updated_at,
        (SELECT id FROM fetch_job WHERE content_source_id = s.id
           AND status IN ('COMPLETED', 'FAILED') ORDER BY id DESC LIMIT 1) AS latest_id,
        (SELECT count(*) FROM fetch_job WHERE content_source_id = s.id
           AND status IN ('QUEUED', 'ONGOING')) AS active,
        (SELECT id FROM fetch_job WHERE content_source_id = s.id AND status = 'COMPLETED'
         ORDER BY id DESC LIMIT 1) AS ok_id
    FROM content_sources s
    WHERE :source_id IS NULL OR s.id = :source_id
)
SELECT h.source_id, h.source_updated_at, h.active, j.id AS job_id, j.status, j.ended_at,
    j.error_code, j.http_status, ok.ended_at AS last_success_at,
    {failure_run} AS failures
FROM heads h
LEFT JOIN fetch_job j ON j.id = h.latest_id
LEFT JOIN fetch_job ok ON ok.id = h.ok_id
ORDER BY h.source_id
""".format(failure_run=failure_run("h.source_id", "h.ok_id"))


async def latest_jobs(db: Database, source_id: int | None = None) -> list[LatestJob]:
    """Every source's (or one source's) latest finished job, by the (content_source_id, id)
    index."""
    rows = await db.fetchall(_LATEST, {"source_id": source_id})
    return [
        LatestJob(
            source_id=row["source_id"],
            source_updated_at=row["source_updated_at"],
            job_id=row["job_id"],
            status=FetchJobStatus(row["status"]) if row["status"] else None,
            ended_at=row["ended_at"],
            error_code=ErrorCode(row["error_code"]) if row["error_code"] else None,
            http_status=row["http_status"],
            failures=row["failures"],
            last_success_at=row["last_success_at"],
            active=bool(row["active"]),
        )
        for row in rows
    ]
