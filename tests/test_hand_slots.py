"""Fetches by hand (``rssd fetch``, ``run --once``) take their host's slots like the
daemon's claims: together they never send a host more than ``max_per_host`` requests."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from rssd.clock import now_iso, to_iso, utcnow
from rssd.daemon.manual import ManualLeases
from rssd.daemon.pipeline import Pipeline
from rssd.daemon.slots import LONGEST_WAIT_SECONDS, SlotWaits, next_wait
from rssd.daemon.startup import daemon_session
from rssd.fetch.fetcher import Fetcher
from rssd.models.config import load_config
from rssd.models.dto import FetchJobStatus
from rssd.repo.claims import Claim, ClaimRepo, HostBusy
from rssd.repo.db import Database
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer
from tests.support.commands import cli, dated_rss, run_once_from
from tests.support.config import make_config, write_config

pytestmark = pytest.mark.both_backends


async def _sources(db: Database, tmp_path: Path, urls: list[str]) -> list[int]:
    await SourceRepo(db).sync(make_config(tmp_path, urls))
    return [source.id for source in await SourceRepo(db).list()]


async def test_a_claim_by_hand_takes_a_slot_or_none(db: Database, tmp_path: Path) -> None:
    ids = await _sources(db, tmp_path, [f"http://one.example/{n}" for n in range(3)])
    hand = ClaimRepo(db, "hand")
    first = await hand.claim_source(ids[0], max_per_host=2)
    second = await hand.claim_source(ids[1], max_per_host=2)
    assert first is not None and second is not None
    with pytest.raises(HostBusy) as busy:
        await hand.claim_source(ids[2], max_per_host=2)
    assert busy.value.host == "one.example"
    rows = await db.fetchall(
        "SELECT content_source_id, status, host, host_slot FROM fetch_job ORDER BY id"
    )
    assert [tuple(row) for row in rows] == [
        (ids[0], "ONGOING", "one.example", 0),
        (ids[1], "ONGOING", "one.example", 1),
    ], "the refused claim left nothing behind"


async def test_the_daemons_claims_see_the_slots_taken_by_hand(db: Database, tmp_path: Path) -> None:
    ids = await _sources(db, tmp_path, ["http://one.example/a", "http://one.example/b"])
    assert await ClaimRepo(db, "hand").claim_source(ids[0], max_per_host=1) is not None
    daemon = ClaimRepo(db, "daemon")
    await daemon.queue_missing({ids[1]: now_iso()})
    assert await daemon.claim_due(10, 1) == [], "the host's one slot is taken by hand"


async def test_rssd_fetch_waits_for_a_slot_the_daemon_holds(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    """A daemon holds the host's only slot; ``rssd fetch`` of another feed of that host
    sends its request only once the daemon's job has ended."""
    ongoing_at_request: list[int] = []
    requested = asyncio.Event()
    db_holder: list[Database] = []

    async def feed(request: web.Request) -> web.Response:
        row = await db_holder[0].fetchone(
            "SELECT count(*) FROM fetch_job WHERE status = 'ONGOING' AND claimed_by = 'daemon'"
        )
        assert row is not None
        ongoing_at_request.append(int(row[0]))
        requested.set()
        return web.Response(text=dated_rss(["x"]), content_type="application/rss+xml")

    held, waiting = feed_server.route("/held", feed), feed_server.route("/waiting", feed)
    config = write_config(
        tmp_path / "config.toml", [held, waiting], database=str(db_target), max_per_host=1
    )
    db = await open_database(db_target)
    db_holder.append(db)
    try:
        await SourceRepo(db).sync(
            make_config(tmp_path, [held, waiting], database=str(db_target), max_per_host=1)
        )
        ids = {source.url: source.id for source in await SourceRepo(db).list()}
        daemon = ClaimRepo(db, "daemon")
        await daemon.queue_missing({ids[held]: now_iso()})
        (claim,) = await daemon.claim_due(1, 1)
        fetch = asyncio.create_task(cli("fetch", "-c", config, waiting))
        # Give the fetch time to claim (and, with the slot taken, to wait). Were it not to
        # wait, its request would arrive now, with the daemon's job ONGOING: the check
        # below fails. (A slow machine can only make this test less sensitive.)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3.0):
                await requested.wait()
        # The daemon's job ends: its slot is free again.
        await db.write(
            lambda tx: tx.execute(
                "UPDATE fetch_job SET status = 'COMPLETED', ended_at = :now WHERE id = :id",
                {"now": now_iso(), "id": claim.job.id},
            )
        )
        result = await fetch
    finally:
        await db.close()
    assert result.code == 0, result.err
    assert ongoing_at_request == [0], "the request went out only after the slot was free"


async def test_no_claim_is_asked_while_this_process_holds_every_slot_of_the_host(
    feed_server: FeedServer,
    tmp_path: Path,
    db_target: Path | str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Six fetches by hand of one host with two slots, as ``run --once``'s workers: while
    this process holds both slots a claim could only come back HostBusy, so none is asked
    and each source is claimed once (half of ``run --once``'s claims were refused ones)."""

    async def feed(request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)
        return web.Response(text=dated_rss(["x"]), content_type="application/rss+xml")

    urls = [feed_server.route(f"/f{n}", feed) for n in range(6)]
    config = load_config(
        write_config(tmp_path / "config.toml", urls, database=str(db_target), max_per_host=2)
    )
    asked: list[int] = []
    async with asyncio.timeout(60), daemon_session(config) as db:
        sources = await SourceRepo(db).list()
        async with Fetcher(config) as fetcher:
            pipeline = Pipeline(db, fetcher)
            claim_sources = pipeline.claims.claim_sources

            async def counted(
                source_ids: list[int], max_per_host: int | None
            ) -> dict[int, Claim | HostBusy | None]:
                asked.extend(source_ids)
                return await claim_sources(source_ids, max_per_host)

            monkeypatch.setattr(pipeline.claims, "claim_sources", counted)
            reports = await asyncio.gather(*(pipeline.run(source) for source in sources))
            await pipeline.settle()
    assert [report.status for report in reports] == [FetchJobStatus.COMPLETED] * 6
    assert sorted(asked) == sorted(source.id for source in sources)


def test_next_wait_doubles_up_to_the_longest() -> None:
    waits = [0.2]
    for _ in range(6):
        waits.append(next_wait(waits[-1]))
    assert waits[:4] == [0.2, 0.4, 0.8, 1.6]
    assert waits[-1] == LONGEST_WAIT_SECONDS


async def test_an_ended_fetch_wakes_the_longest_waiter_only() -> None:
    waits = SlotWaits()
    order: list[str] = []

    async def waiter(name: str) -> None:
        await waits.wait("h", 30.0)
        order.append(name)

    first = asyncio.create_task(waiter("first"))
    await asyncio.sleep(0)
    second = asyncio.create_task(waiter("second"))
    await asyncio.sleep(0)
    waits.freed("h")
    await first
    assert order == ["first"] and not second.done()
    waits.freed("h")
    await second
    assert order == ["first", "second"]


async def test_a_waiter_cancelled_once_woken_passes_the_slot_on() -> None:
    """Those waiting while this process holds every slot wait for its own fetches to end
    (HELD_WAIT_SECONDS is only a safety net): a wake that went to a waiter cancelled
    before it could use it must reach the next one, not be lost with it."""
    waits = SlotWaits()
    first = asyncio.create_task(waits.wait("h", 30.0))
    await asyncio.sleep(0)
    second = asyncio.create_task(waits.wait("h", 30.0))
    await asyncio.sleep(0)
    waits.freed("h")  # wakes the first ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 5) is True


@pytest.mark.parametrize("ending", ["timed out", "cancelled"])
async def test_a_waiter_that_left_unwoken_leaves_the_queue(ending: str) -> None:
    """A waiter that stopped waiting without being woken leaves its host's queue (a host
    whose waiters all time out is not kept for ever), and the next wake goes to one still
    waiting."""
    waits = SlotWaits()

    async def leave() -> None:
        gone = asyncio.create_task(waits.wait("h", 0.01 if ending == "timed out" else 30.0))
        await asyncio.sleep(0)
        if ending == "cancelled":
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
        else:
            assert await gone is False

    await leave()
    assert waits._waiting == {}
    staying = asyncio.create_task(waits.wait("h", 30.0))
    await asyncio.sleep(0)
    await leave()
    waits.freed("h")
    assert await asyncio.wait_for(staying, 5) is True
    assert waits._waiting == {}


async def test_a_slot_released_after_a_refused_claim_wakes_nobody() -> None:
    """The claim it was taken for came back HostBusy: other processes hold the host's
    slots, and a waiter woken now would only be refused in turn."""
    waits = SlotWaits()
    waits.taken("h")
    waiting = asyncio.create_task(waits.wait("h", 30.0))
    await asyncio.sleep(0)
    waits.released("h")
    await asyncio.sleep(0.01)
    assert waits.held("h") == 0 and not waiting.done()
    waits.taken("h")
    waits.freed("h")
    assert await waiting is True


async def test_the_slots_this_process_holds_are_counted_and_a_wait_says_why_it_ended() -> None:
    """A waiter whose timeout ends while this process holds every slot of the host does not
    ask the database again (Pipeline._claim_in_a_slot): it needs to know whether it was
    woken and how many slots are held here."""
    waits = SlotWaits()
    waits.taken("h")
    waits.taken("h")
    assert (waits.held("h"), waits.held("other")) == (2, 0)
    assert await waits.wait("h", 0.01) is False, "timed out"
    woken = asyncio.create_task(waits.wait("h", 30.0))
    await asyncio.sleep(0)
    waits.freed("h")
    assert await woken is True
    assert waits.held("h") == 1
    waits.freed("h")
    assert waits.held("h") == 0


async def _left_by_a_killed_process(
    db_target: Path | str, tmp_path: Path, urls: list[str], url: str
) -> int:
    """The feeds ``urls`` synced, and what ``run --once`` killed -9 leaves: the job of the
    feed at ``url`` ONGOING in a slot of its host, its lease run out (nobody renews it).
    Returns the job's id."""
    db = await open_database(db_target)
    try:
        await SourceRepo(db).sync(make_config(tmp_path, urls, database=str(db_target)))
        ids = {source.url: source.id for source in await SourceRepo(db).list()}
        claim = await ClaimRepo(db, "killed:1:manual").claim_source(ids[url], max_per_host=1)
        assert claim is not None
        past = to_iso(utcnow() - timedelta(hours=1))
        await db.write(
            lambda tx: tx.execute(
                "UPDATE fetch_job SET lease_expires_at = :past WHERE id = :id",
                {"past": past, "id": claim.job.id},
            )
        )
        return claim.job.id
    finally:
        await db.close()


async def test_run_once_takes_back_the_jobs_and_slots_a_killed_run_left(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    """A ``run --once`` killed -9 left a job ONGOING, holding its host's only slot, under a
    lease that ran out. The next run fetches that feed (its job taken back, not skipped as
    active) and the host's other feed (not waiting for the slot without end): on
    PostgreSQL with no daemon running, nothing else would ever take them back."""
    held = feed_server.static("/held", dated_rss(["x"]))
    other = feed_server.static("/other", dated_rss(["y"]))
    config = write_config(
        tmp_path / "config.toml", [held, other], database=str(db_target), max_per_host=1
    )
    killed = await _left_by_a_killed_process(db_target, tmp_path, [held, other], held)
    with capture_logs() as logs:
        summary = await asyncio.wait_for(run_once_from(config), 60)
    assert (summary.completed, summary.skipped) == (2, 0), summary
    taken = [e for e in logs if e["event"] in ("jobs.taken_back", "jobs.recovered")]
    assert taken and taken[0]["error_code"] == "interrupted", logs
    db = await open_database(db_target)
    try:
        row = await db.fetchone(
            "SELECT status, error_code FROM fetch_job WHERE id = :id", {"id": killed}
        )
    finally:
        await db.close()
    assert row is not None and tuple(row) == ("FAILED", "interrupted")


async def test_rssd_fetch_takes_back_a_job_whose_lease_ran_out(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    """``rssd fetch`` of a feed whose job a killed process left ONGOING, its lease run out:
    fetched (exit 0), not refused as busy (exit 3). (``rssd fetch`` logs errors only: the
    ``jobs.taken_back`` it logs is seen by a daemon's operator in ``run --once``.)"""
    held = feed_server.static("/held", dated_rss(["x"]))
    config = write_config(tmp_path / "config.toml", [held], database=str(db_target))
    await _left_by_a_killed_process(db_target, tmp_path, [held], held)
    fetched = await asyncio.wait_for(cli("fetch", "-c", config, held), 60)
    assert fetched.code == 0, fetched.out + fetched.err
    assert feed_server.hits.get("/held") == 1


async def test_a_fetch_waiting_on_a_host_a_killed_run_holds_takes_its_slot_back(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    """A fetch by hand of a host's other feed, while the host's only slot is held by a
    killed process's job whose lease ran out: the fetch's wait for the slot takes that
    job back, instead of waiting for good (no daemon runs to do it)."""
    held = feed_server.static("/held", dated_rss(["x"]))
    other = feed_server.static("/other", dated_rss(["y"]))
    killed = await _left_by_a_killed_process(db_target, tmp_path, [held, other], held)
    config = load_config(
        write_config(
            tmp_path / "config.toml", [held, other], database=str(db_target), max_per_host=1
        )
    )
    db = await open_database(db_target)
    try:
        (source,) = [s for s in await SourceRepo(db).list() if s.url == other]
        async with Fetcher(config) as fetcher:
            pipeline = Pipeline(db, fetcher)
            report = await asyncio.wait_for(pipeline.run(source), 30)
            await pipeline.settle()
        row = await db.fetchone(
            "SELECT status, error_code FROM fetch_job WHERE id = :id", {"id": killed}
        )
    finally:
        await db.close()
    assert report.status is FetchJobStatus.COMPLETED, report
    assert row is not None and tuple(row) == ("FAILED", "interrupted")
    assert feed_server.hits.get("/other") == 1 and feed_server.hits.get("/held") is None


async def test_a_fetch_that_starts_as_the_last_one_ends_gets_a_lease_renewer(
    db: Database,
) -> None:
    """The last fetch by hand to end cancels the renewer; one that starts before the loop
    ran that cancellation found it not yet done and kept it: its lease was never renewed,
    and a take-back of expired leases would have taken its job from under it."""
    leases = ManualLeases(ClaimRepo(db, "hand"))
    async with leases.holding():
        first = leases.renewer
    async with leases.holding():  # in the same turn of the loop
        assert leases.renewer is not None and leases.renewer is not first
        assert not leases.renewer.cancelling()
    assert first is not None and first.cancelling()
