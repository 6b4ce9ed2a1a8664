"""The claim loop's lease loop (rssd.daemon.claimer): while a fetch runs its lease is
renewed, so the daemon's own take-back never takes the job from under it.

ClaimRepo.renew is tested alone (test_repo_claims.py); this fails if the loop stops calling
it. Lease and renew periods are shortened; the test counts the loop's rounds (its ``beat``)
rather than sleeping, and holds the fetch open well past three lease lengths.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

import rssd.daemon.claimer as claimer_module
import rssd.repo.claims as claims_module
from rssd.clock import to_iso, utcnow
from rssd.daemon.claimer import Claimer
from rssd.daemon.pipeline import JobReport, Pipeline
from rssd.daemon.startup import daemon_session
from rssd.fetch.fetcher import Fetcher
from rssd.models.config import load_config
from rssd.models.dto import FetchJobStatus
from rssd.repo.claims import ClaimRepo
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer
from tests.support.config import write_config

LEASE = 0.8
RENEW = LEASE / 4
#: Rounds of the lease loop that cover more than three lease lengths.
ROUNDS = int(3 * LEASE / RENEW) + 2


async def test_the_lease_loop_keeps_a_long_fetch_ongoing(
    feed_server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(claims_module, "LEASE_SECONDS", LEASE)
    monkeypatch.setattr(claimer_module, "RENEW_SECONDS", RENEW)
    url, answer = feed_server.held("/slow")
    config = load_config(write_config(tmp_path / "config.toml", [url]))
    async with asyncio.timeout(60), daemon_session(config) as db:
        (source,) = await SourceRepo(db).list()
        claims = ClaimRepo(db, "d1")
        await claims.queue_missing({source.id: to_iso(utcnow() - timedelta(minutes=1))})
        ended: list[JobReport | BaseException | None] = []
        finished = asyncio.Event()
        covered = asyncio.Event()  # ROUNDS rounds of the lease loop, the fetch in flight
        rounds = 0

        def beat(running: int) -> None:
            nonlocal rounds
            rounds += bool(running)
            if rounds >= ROUNDS:
                covered.set()

        def done(outcome: JobReport | BaseException | None) -> None:
            ended.append(outcome)
            finished.set()

        async with Fetcher(config) as fetcher:
            claimer = Claimer(claims, Pipeline(db, fetcher, claims), lambda: (1, 1), done)
            loops = [
                asyncio.create_task(claimer.claim_loop()),
                asyncio.create_task(claimer.lease_loop(beat)),
            ]
            try:
                await covered.wait()
                row = await db.fetchone("SELECT status, claimed_by, error_code FROM fetch_job")
                assert row is not None
                assert (row[0], row[1], row[2]) == ("ONGOING", "d1", None), (
                    "the fetch was taken back from under its daemon"
                )
                assert feed_server.hits.get("/slow") == 1
                answer.set()
                await finished.wait()
            finally:
                claimer.stop()
                for loop in loops:
                    loop.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
                await claimer.drain(0)
    (report,) = ended
    assert isinstance(report, JobReport) and report.status is FetchJobStatus.COMPLETED
