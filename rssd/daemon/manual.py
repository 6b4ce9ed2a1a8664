"""Leases of the fetches run by hand (``rssd fetch``, ``run --once``): no daemon's lease
loop renews them, so while any runs, one task renews them all with one statement (a task
per fetch was a measurable part of a ``run --once`` pass; bench/README.md). The daemon's
own claims need none of this: its lease loop (rssd/daemon/claimer.py) renews them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from rssd.logs import get_logger
from rssd.repo.claims import LEASE_SECONDS, ClaimRepo

log = get_logger("rssd.fetch")

RENEW_SECONDS = LEASE_SECONDS / 3


class ManualLeases:
    def __init__(self, claims: ClaimRepo) -> None:
        self._claims = claims
        self._held = 0
        #: The renewing task while fetches run (it ends with the last of them).
        self.renewer: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator[None]:
        """One fetch by hand runs inside: its lease is renewed until it ends."""
        self._held += 1
        if self.renewer is None or self.renewer.done():
            self.renewer = asyncio.create_task(self._renew())
        try:
            yield
        finally:
            self._held -= 1
            if not self._held:
                self.renewer.cancel()

    async def _renew(self) -> None:
        while self._held:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await self._claims.renew()
            except Exception as exc:  # the fetches go on; their leases may run out
                log.error("jobs.lease_failed", error_message=repr(exc))
