"""Per-host politeness in the database (rssd/repo/hosts.py), on both backends: the gap
between request starts, a host's pause, and the claims skipping a paused host."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rssd.clock import to_iso, utcnow
from rssd.repo.claims import ClaimRepo
from rssd.repo.db import Database
from rssd.repo.hosts import HostRepo
from rssd.repo.sources import SourceRepo
from tests.support.config import make_config

pytestmark = pytest.mark.both_backends

HOUR = 3600.0


async def test_a_host_takes_one_start_per_gap(db: Database) -> None:
    hosts = HostRepo(db)
    assert await hosts.take_turn("a.example", HOUR) == 0.0
    wait = await hosts.take_turn("a.example", HOUR)
    assert 0 < wait <= HOUR, "the next start is a gap away"
    assert await hosts.take_turn("b.example", HOUR) == 0.0, "another host has its own gap"


async def test_no_gap_takes_every_turn(db: Database) -> None:
    hosts = HostRepo(db)
    assert [await hosts.take_turn("a.example", 0.0) for _ in range(3)] == [0.0] * 3


async def test_a_pause_holds_the_host_and_a_shorter_one_does_not_shorten_it(
    db: Database,
) -> None:
    hosts = HostRepo(db)
    await hosts.pause("a.example", HOUR)
    await hosts.pause("a.example", 60.0)
    wait = await hosts.take_turn("a.example", 0.0)
    assert HOUR - 60 < wait <= HOUR
    assert set(await hosts.paused()) == {"a.example"}


async def test_claims_skip_a_paused_host(db: Database, tmp_path: Path) -> None:
    urls = ["http://a.example/1", "http://a.example/2", "http://b.example/1"]
    await SourceRepo(db).sync(make_config(tmp_path, urls))
    ids = {source.url: source.id for source in await SourceRepo(db).list()}
    claims = ClaimRepo(db, "d1")
    await claims.queue_missing(dict.fromkeys(ids.values(), to_iso(utcnow() - timedelta(minutes=5))))
    await HostRepo(db).pause("a.example", HOUR)
    claimed = await claims.claim_due(10, 2)
    assert [claim.source.url for claim in claimed] == ["http://b.example/1"]


async def test_idle_hosts_are_forgotten_and_restrained_ones_kept(db: Database) -> None:
    hosts = HostRepo(db)
    assert await hosts.take_turn("done.example", 0.0) == 0.0  # its gap is over at once
    assert await hosts.take_turn("gap.example", HOUR) == 0.0  # next start an hour away
    await hosts.pause("paused.example", HOUR)
    later = to_iso(await db.now() + timedelta(minutes=1))
    assert await hosts.forget_idle(later) == 1
    assert await hosts.take_turn("gap.example", HOUR) > 0, "its gap still holds"
    assert set(await hosts.paused()) == {"paused.example"}
    assert await hosts.take_turn("done.example", HOUR) == 0.0, "a forgotten host starts at once"
    assert await hosts.forget_idle(to_iso(await db.now() - timedelta(days=1))) == 0
