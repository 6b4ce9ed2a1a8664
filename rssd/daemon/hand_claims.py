"""Claims by hand, batched: ``run --once`` runs hundreds of workers, each asking for its
source's claim; the claims asked for while one batch is in the database go to it together
as the next batch, one ``ClaimRepo.claim_sources`` (a few statements), as the daemon's
claims go in batches. Claimed one by one, a pass sent seven statements a source through
the one writer, and on PostgreSQL those set its pace (bench/README.md).

A worker cancelled while its claim is in the database (the run is stopping) does not get
it: the claim goes to ``orphaned``, which records it ``interrupted`` as a cancelled fetch
is, so that no job is left ONGOING with nobody to run it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from rssd.batching import Batcher
from rssd.repo.claims import Claim, ClaimRepo

#: The most sources claimed in one transaction (a transaction is short; the rest wait
#: for the next one). As many as a daemon's usual max_concurrency: at 200, `run --once`
#: with 500 slots (250 hosts x 2) reached 307 requests in flight on PostgreSQL and 373 on
#: SQLite, the fetches first claimed ending before the last batch was in; at 500, 498 and
#: 499 (bench/run.py, README "Benchmark").
MAX_BATCH = 500


class HandClaims:
    def __init__(
        self,
        claims: ClaimRepo,
        max_per_host: int | None,
        orphaned: Callable[[Claim], Awaitable[None]],
    ) -> None:
        self._claims = claims
        self._max_per_host = max_per_host
        self._orphaned = orphaned
        self._batcher: Batcher[int, Claim | None] = Batcher(
            self._claim_batch, MAX_BATCH, self._unclaimed
        )

    async def claim(self, source_id: int) -> Claim | None:
        """The source's claim (``ClaimRepo.claim_sources``): None while it has an ONGOING
        job; HostBusy raised when every slot of its host is taken."""
        return await self._batcher.ask(source_id)

    async def settle(self) -> None:
        """Until the batch in the database, if any, is answered (and its orphans recorded)."""
        await self._batcher.settle()

    async def _claim_batch(self, source_ids: Sequence[int]) -> list[Claim | Exception | None]:
        results = await self._claims.claim_sources(source_ids, self._max_per_host)
        answers: list[Claim | Exception | None] = []
        answered: set[int] = set()
        for source_id in source_ids:
            # Asked twice in one batch: the second finds it taken.
            result = results.get(source_id) if source_id not in answered else None
            answered.add(source_id)
            answers.append(result)
        return answers

    async def _unclaimed(self, claim: Claim | None) -> None:
        if claim is not None:
            await self._orphaned(claim)
