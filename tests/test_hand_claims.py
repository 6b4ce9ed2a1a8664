"""Claims by hand in batches (``ClaimRepo.claim_sources``, rssd/daemon/hand_claims.py):
what ``run --once`` and ``rssd fetch`` claim, many sources in one transaction, with the
same outcome per source as one claim each."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from rssd.clock import now_iso
from rssd.daemon.hand_claims import HandClaims
from rssd.models.dto import ErrorCode
from rssd.repo.claims import Claim, ClaimRepo, HostBusy
from rssd.repo.daemons import new_identity
from rssd.repo.db import Database
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.support.config import make_config

pytestmark = pytest.mark.both_backends


async def _sources(db: Database, tmp_path: Path, urls: list[str]) -> list[int]:
    await SourceRepo(db).sync(make_config(tmp_path, urls))
    by_url = {source.url: source.id for source in await SourceRepo(db).list()}
    return [by_url[url] for url in urls]


async def _jobs(db: Database) -> list[tuple[object, ...]]:
    rows = await db.fetchall(
        "SELECT content_source_id, status, host, host_slot FROM fetch_job "
        "WHERE status IN ('QUEUED', 'ONGOING') ORDER BY content_source_id"
    )
    return [tuple(row) for row in rows]


async def test_one_batch_claims_each_source_as_one_claim_would(
    db: Database, tmp_path: Path
) -> None:
    urls = [
        "http://one.example/a",  # QUEUED: claimed in slot 0
        "http://one.example/b",  # no job: a new one, slot 1
        "http://one.example/c",  # its host is full: HostBusy, left QUEUED
        "http://two.example/a",  # ONGOING already: None
        "http://xn--caf-dma.example/a",  # the IDN's punycode form...
        "http://café.example/b",  # ...and the IDN: one host, the second is busy
    ]
    ids = await _sources(db, tmp_path, urls)
    hand = ClaimRepo(db, "hand")
    await hand.queue_missing({ids[0]: now_iso(), ids[2]: now_iso(), ids[4]: now_iso()})
    other = await ClaimRepo(db, "other").claim_source(ids[3])
    assert other is not None
    gone = max(ids) + 100

    got = await hand.claim_sources([*ids, gone], max_per_host=2)

    first, started, busy, active, puny, idn = (got[i] for i in ids)
    assert isinstance(first, Claim) and first.scheduled and first.source.id == ids[0]
    assert isinstance(started, Claim) and not started.scheduled
    assert isinstance(busy, HostBusy) and busy.host == "one.example"
    assert active is None and got[gone] is None
    assert isinstance(puny, Claim)
    # one slot left of two on the IDN's host? no: max 2, so the IDN takes the second
    assert isinstance(idn, Claim)
    assert await _jobs(db) == [
        (ids[0], "ONGOING", "one.example", 0),
        (ids[1], "ONGOING", "one.example", 1),
        (ids[2], "QUEUED", None, None),
        (ids[3], "ONGOING", None, None),
        (ids[4], "ONGOING", "xn--caf-dma.example", 0),
        (ids[5], "ONGOING", "xn--caf-dma.example", 1),
    ]
    again = await hand.claim_sources([ids[2], ids[5]], max_per_host=2)
    assert isinstance(again[ids[2]], HostBusy), "still full"
    assert again[ids[5]] is None, "ONGOING: not claimed twice"


async def test_without_a_limit_no_slot_is_taken(db: Database, tmp_path: Path) -> None:
    ids = await _sources(db, tmp_path, [f"http://one.example/{n}" for n in range(3)])
    got = await ClaimRepo(db, "hand").claim_sources(ids)
    assert all(isinstance(claim, Claim) for claim in got.values())
    assert await _jobs(db) == [(i, "ONGOING", None, None) for i in ids]


async def test_two_processes_claiming_the_same_sources_never_share_a_job(
    db: Database, db_target: Path | str, tmp_path: Path
) -> None:
    """Two processes (two databases open, two writers) start jobs for the same sources
    at once: each source's job is one process's, and each process gets back as its claims
    only the jobs it holds (the new jobs are read back by source and holder)."""
    ids = await _sources(db, tmp_path, [f"http://h{n}.example/feed" for n in range(40)])
    other = await open_database(db_target)
    try:
        got_a, got_b = await asyncio.gather(
            ClaimRepo(db, "a").claim_sources(ids), ClaimRepo(other, "b").claim_sources(ids[::-1])
        )
    finally:
        await other.close()
    holders = {
        int(row[0]): row[1]
        for row in await db.fetchall(
            "SELECT content_source_id, claimed_by FROM fetch_job WHERE status = 'ONGOING'"
        )
    }
    assert sorted(holders) == sorted(ids)
    for source_id in ids:
        claims = {name: got[source_id] for name, got in (("a", got_a), ("b", got_b))}
        held = [name for name, claim in claims.items() if isinstance(claim, Claim)]
        assert held == [holders[source_id]], f"source {source_id}: {claims}"
        claim = claims[held[0]]
        assert isinstance(claim, Claim) and claim.job.claimed_by == held[0]
        assert claim.source.id == source_id and not claim.scheduled


def test_every_process_has_an_identity_of_its_own() -> None:
    """host:pid and a random part: two processes of one pid on two machines of one name
    (containers) do not hold each other's claims."""
    first, second = new_identity(), new_identity()
    assert first.id != second.id
    assert first.id.startswith(f"{first.hostname}:{first.pid}:")


class _Counted(ClaimRepo):
    """The real repository, counting its batches."""

    batches: list[int]

    async def claim_sources(
        self, source_ids: Sequence[int], max_per_host: int | None = None
    ) -> dict[int, Claim | HostBusy | None]:
        self.batches.append(len(source_ids))
        return await super().claim_sources(source_ids, max_per_host)


async def test_claims_asked_together_go_in_one_batch(db: Database, tmp_path: Path) -> None:
    ids = await _sources(db, tmp_path, [f"http://h{n % 10}.example/{n}" for n in range(60)])
    repo = _Counted(db, "hand")
    repo.batches = []
    hand = HandClaims(repo, 10, _never)
    claims = await asyncio.gather(*(hand.claim(i) for i in ids))
    assert sorted(c.source.id for c in claims if c is not None) == sorted(ids)
    assert repo.batches == [60], "asked in one turn of the loop: one batch"
    assert await hand.claim(ids[0]) is None, "a later ask: a batch of its own"
    assert repo.batches == [60, 1]


async def test_busy_and_taken_reach_their_askers(db: Database, tmp_path: Path) -> None:
    ids = await _sources(db, tmp_path, ["http://one.example/a", "http://one.example/b"])
    hand = HandClaims(ClaimRepo(db, "hand"), 1, _never)
    first, second, twice = await asyncio.gather(
        hand.claim(ids[0]), hand.claim(ids[1]), hand.claim(ids[0]), return_exceptions=True
    )
    assert isinstance(first, Claim)
    assert isinstance(second, HostBusy)
    assert twice is None, "asked twice at once: the second finds it taken"


async def test_a_claim_whose_asker_was_cancelled_is_not_left_ongoing(
    db: Database, tmp_path: Path
) -> None:
    (source_id,) = await _sources(db, tmp_path, ["http://one.example/a"])
    jobs = FetchJobRepo(db)
    orphans: list[Claim] = []

    async def orphaned(claim: Claim) -> None:
        orphans.append(claim)
        await jobs.mark_failed(claim.job.id, ErrorCode.INTERRUPTED, "cancelled")

    hand = HandClaims(ClaimRepo(db, "hand"), 2, orphaned)
    asker = asyncio.create_task(hand.claim(source_id))
    for _ in range(3):  # the asker queues, the batch goes to the database
        await asyncio.sleep(0)
    asker.cancel()
    await hand.settle()
    assert asker.cancelled()
    assert [claim.source.id for claim in orphans] == [source_id]
    row = await db.fetchone(
        "SELECT status, error_code FROM fetch_job WHERE id = :id", {"id": orphans[0].job.id}
    )
    assert row is not None and tuple(row) == ("FAILED", "interrupted")


async def _never(claim: Claim) -> None:
    raise AssertionError(f"no asker was cancelled, yet {claim.job.id} was orphaned")


async def test_a_job_started_by_hand_carries_the_sources_run_of_failures(
    db: Database, tmp_path: Path
) -> None:
    """A source with no job gets a new one, whose ``failures`` is the source's run of
    failures since its last success (the backoff's memory), as a queued job's is."""
    (source_id,) = await _sources(db, tmp_path, ["http://one.example/a"])
    hand, jobs = ClaimRepo(db, "hand"), FetchJobRepo(db)
    for code in (ErrorCode.TIMEOUT, ErrorCode.INTERRUPTED, ErrorCode.DNS):
        claim = (await hand.claim_sources([source_id]))[source_id]
        assert isinstance(claim, Claim) and not claim.scheduled
        await jobs.mark_failed(claim.job.id, code, "failed")
    claim = (await hand.claim_sources([source_id], max_per_host=2))[source_id]
    assert isinstance(claim, Claim)
    assert claim.failures == 2, "two real failures; an interruption is not the feed's"
