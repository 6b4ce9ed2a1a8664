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

import asyncio
from collections.abc import Awaitable, Callable

from rssd.repo.claims import Claim, ClaimRepo, HostBusy

#: The most sources claimed in one transaction (a transaction is short; the rest wait
#: for the next one).
MAX_BATCH = 200


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
        self._asked: list[tuple[int, asyncio.Future[Claim | None]]] = []
        self._batches: asyncio.Task[None] | None = None

    async def claim(self, source_id: int) -> Claim | None:
        """The source's claim (``ClaimRepo.claim_sources``): None while it has an ONGOING
        job; HostBusy raised when every slot of its host is taken."""
        asked: asyncio.Future[Claim | None] = asyncio.get_running_loop().create_future()
        self._asked.append((source_id, asked))
        if self._batches is None or self._batches.done():
            self._batches = asyncio.create_task(self._run_batches(), name="hand-claims")
        return await asked

    async def settle(self) -> None:
        """Until the batch in the database, if any, is answered (and its orphans recorded)."""
        if self._batches is not None:
            await asyncio.gather(self._batches, return_exceptions=True)

    async def _run_batches(self) -> None:
        batch: list[tuple[int, asyncio.Future[Claim | None]]] = []
        try:
            while self._asked:
                await asyncio.sleep(0)  # the workers woken in this turn of the loop ask too
                batch, self._asked = self._asked[:MAX_BATCH], self._asked[MAX_BATCH:]
                await self._answer(batch)
        finally:  # cancelled (the loop is closing): nobody is left waiting for ever
            for _, asked in [*batch, *self._asked]:
                if not asked.done():
                    asked.cancel()

    async def _answer(self, batch: list[tuple[int, asyncio.Future[Claim | None]]]) -> None:
        try:
            results = await self._claims.claim_sources(
                [source_id for source_id, _ in batch], self._max_per_host
            )
        except Exception as exc:  # the database refused the write: each asker hears it
            for _, asked in batch:
                if not asked.done():
                    asked.set_exception(exc)
            return
        answered: set[int] = set()
        for source_id, asked in batch:
            result = results.get(source_id) if source_id not in answered else None
            answered.add(source_id)  # asked twice in one batch: the second finds it taken
            if asked.done():  # its worker was cancelled meanwhile
                if isinstance(result, Claim):
                    await self._orphaned(result)
            elif isinstance(result, HostBusy):
                asked.set_exception(result)
            else:
                asked.set_result(result)
