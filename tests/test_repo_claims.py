"""ClaimRepo: the schedule in fetch_job, claims with leases and host slots, take-backs.

On both backends: the claim rules must hold for SQLite (one daemon) and PostgreSQL (many).
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

import rssd.daemon.reconcile as reconcile_module
import rssd.repo.claims as claims_module
from rssd.clock import to_iso, utcnow
from rssd.daemon.reconcile import reconcile
from rssd.models.dto import ErrorCode, FetchJobStatus, FetchMeta
from rssd.net.hosts import host_key
from rssd.repo.claims import LEASE_SECONDS, Claim, ClaimRepo
from rssd.repo.claims import PAGE as CANDIDATE_PAGE
from rssd.repo.db import Database, Tx
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from rssd.repo.transitions import NextJob
from tests.support.config import make_config

pytestmark = pytest.mark.both_backends


def past() -> str:
    """Due a few minutes ago, at the time of the call (not of the import: a long session
    must not turn a module-level "future" into the past)."""
    return to_iso(utcnow() - timedelta(minutes=5))


def future() -> str:
    return to_iso(utcnow() + timedelta(hours=1))


async def sources(db: Database, tmp_path: Path, urls: list[str]) -> dict[str, int]:
    await SourceRepo(db).sync(make_config(tmp_path, urls))
    return {source.url: source.id for source in await SourceRepo(db).list()}


async def jobs_of(db: Database) -> list[tuple[int, str, str | None]]:
    rows = await db.fetchall(
        "SELECT content_source_id, status, error_code FROM fetch_job ORDER BY id"
    )
    return [(row[0], row[1], row[2]) for row in rows]


async def test_only_due_jobs_of_enabled_sources_are_claimed(db: Database, tmp_path: Path) -> None:
    ids = await sources(db, tmp_path, [f"http://h{i}.example/feed" for i in range(3)])
    due, later, disabled = ids.values()
    claims = ClaimRepo(db, "d1")
    assert await claims.queue_missing({due: past(), later: future(), disabled: past()}) == 3
    await db.write(
        lambda tx: tx.execute(
            "UPDATE content_sources SET enabled = 0 WHERE id = :id", {"id": disabled}
        )
    )
    claimed = await claims.claim_due(10, 2)
    assert [claim.source.id for claim in claimed] == [due]
    (claim,) = claimed
    assert claim.job.status is FetchJobStatus.ONGOING
    assert claim.job.claimed_by == "d1"
    assert claim.source.enabled
    assert await claims.claim_due(10, 2) == [], "an ONGOING job is not claimed again"


async def test_queue_missing_leaves_an_active_job_alone(db: Database, tmp_path: Path) -> None:
    (source,) = (await sources(db, tmp_path, ["http://a.example/feed"])).values()
    claims = ClaimRepo(db, "d1")
    due = past()
    assert await claims.queue_missing({source: due}) == 1
    assert await claims.queue_missing({source: future()}) == 0
    (claim,) = await claims.claim_due(1, 1)
    assert await claims.queue_missing({source: past()}) == 0, "ONGOING counts as active"
    assert await jobs_of(db) == [(source, "ONGOING", None)]
    assert claim.job.not_before == due


async def test_the_per_host_limit_holds_and_frees_as_jobs_end(db: Database, tmp_path: Path) -> None:
    urls = [f"http://same.example/feed{i}" for i in range(5)] + ["http://other.example/f"]
    ids = await sources(db, tmp_path, urls)
    claims = ClaimRepo(db, "d1")
    await claims.queue_missing(dict.fromkeys(ids.values(), past()))
    first = await claims.claim_due(10, 2)
    hosts = sorted(host_key(claim.source.url) for claim in first)
    assert hosts == ["other.example", "same.example", "same.example"]
    assert await claims.claim_due(10, 2) == [], "same.example's two slots are taken"
    ending = next(claim for claim in first if "same" in claim.source.url)
    done = await FetchJobRepo(db).mark_completed(ending.job.id, FetchMeta(http_status=200))
    assert done is not None
    (freed,) = await claims.claim_due(10, 2)
    assert host_key(freed.source.url) == "same.example"


async def test_an_idn_host_and_its_punycode_share_the_slots(db: Database, tmp_path: Path) -> None:
    """Issue 22: the claims key hosts as the fetcher does (rssd.net.hosts), so one server
    written two ways gets one slot, not two."""
    ids = await sources(db, tmp_path, ["https://bücher.de/a", "https://xn--bcher-kva.de/b"])
    claims = ClaimRepo(db, "d1")
    await claims.queue_missing(dict.fromkeys(ids.values(), past()))
    (first,) = await claims.claim_due(10, 1)
    assert await claims.claim_due(10, 1) == [], "the same host's one slot is taken"
    row = await db.fetchone("SELECT host FROM fetch_job WHERE id = :id", {"id": first.job.id})
    assert row is not None and row[0] == "xn--bcher-kva.de"


async def test_a_claim_counts_the_enabled_users_subscribed(db: Database, tmp_path: Path) -> None:
    """The default User-Agent names a feed's subscribers: enabled users only."""
    ids = await sources(db, tmp_path, ["http://a.example/feed", "http://b.example/feed"])
    a, b = ids.values()

    async def users(tx: Tx) -> None:
        for number, enabled in ((1, 1), (2, 1), (3, 0)):
            await tx.execute(
                "INSERT INTO users (id, name, webhook_url, enabled, config_digest, created_at, "
                "updated_at) VALUES (:id, :name, 'https://h.example/', :enabled, 'd', :now, :now)",
                {"id": number, "name": f"u{number}", "enabled": enabled, "now": past()},
            )
            await tx.execute(
                "INSERT INTO subscriptions (user_id, content_source_id, created_at) "
                "VALUES (:id, :source, :now)",
                {"id": number, "source": a, "now": past()},
            )

    await db.write(users)
    claims = ClaimRepo(db, "d1")
    await claims.queue_missing({a: past(), b: past()})
    counted = {claim.source.id: claim.subscribers for claim in await claims.claim_due(10, 2)}
    assert counted == {a: 2, b: 0}


async def test_two_daemons_claiming_at_once_never_take_the_same_job(
    db: Database, db_target: Path | str, tmp_path: Path
) -> None:
    urls = [f"http://h{i % 7}.example/feed{i}" for i in range(40)]
    ids = await sources(db, tmp_path, urls)
    await ClaimRepo(db, "setup").queue_missing(dict.fromkeys(ids.values(), past()))
    other = await open_database(db_target)
    try:
        repos = [ClaimRepo(db, "d1"), ClaimRepo(other, "d2")]

        async def claim_loop(repo: ClaimRepo) -> list[list[Claim]]:
            """A daemon claims one batch at a time (rssd/daemon/claimer.py): a writer's
            transaction holds one claim's host locks, taken in one order, so the two
            daemons' claims never deadlock."""
            return [await repo.claim_due(3, 3) for _ in range(8)]

        loops = await asyncio.gather(*(claim_loop(repo) for repo in repos))
        batches = [batch for loop in loops for batch in loop]
    finally:
        await other.close()
    claimed = [claim.job.id for batch in batches for claim in batch]
    assert len(claimed) == len(set(claimed)), "a job claimed twice"
    per_host: dict[str, int] = {}
    for batch in batches:
        for claim in batch:
            host = host_key(claim.source.url)
            per_host[host] = per_host.get(host, 0) + 1
    assert per_host and max(per_host.values()) <= 3, per_host
    rows = await db.fetchall(
        "SELECT claimed_by, count(*) FROM fetch_job WHERE status = 'ONGOING' GROUP BY claimed_by"
    )
    assert sum(row[1] for row in rows) == len(claimed)


async def test_an_expired_lease_is_taken_back_and_the_source_is_due_at_once(
    db: Database, tmp_path: Path
) -> None:
    ids = await sources(db, tmp_path, ["http://a.example/feed", "http://b.example/feed"])
    dead, alive = ClaimRepo(db, "dead"), ClaimRepo(db, "alive")
    await dead.queue_missing(dict.fromkeys(ids.values(), past()))
    (lost,) = await dead.claim_due(1, 2)
    (kept,) = await alive.claim_due(1, 2)
    assert await alive.take_back() == [], "no lease has expired yet"
    await db.write(
        lambda tx: tx.execute(
            "UPDATE fetch_job SET lease_expires_at = :past WHERE claimed_by = 'dead'",
            {"past": past()},
        )
    )
    assert await alive.renew() == 1, "renewing touches only our own"
    assert await alive.take_back() == [lost.job.id]
    rows = await db.fetchall(
        "SELECT id, status, error_code, not_before, claimed_by FROM fetch_job "
        "WHERE content_source_id = :id ORDER BY id",
        {"id": lost.source.id},
    )
    assert [(r[1], r[2]) for r in rows] == [("FAILED", "interrupted"), ("QUEUED", None)]
    assert rows[1][3] <= to_iso(utcnow()), "due at once"
    (again,) = await alive.claim_due(5, 2)
    assert again.source.id == lost.source.id
    assert kept.job.id != again.job.id


async def test_renew_pushes_the_lease_forward(db: Database, tmp_path: Path) -> None:
    ids = await sources(db, tmp_path, ["http://a.example/feed"])
    claims = ClaimRepo(db, "d1")
    await claims.queue_missing(dict.fromkeys(ids.values(), past()))
    await claims.claim_due(1, 1)
    await db.write(
        lambda tx: tx.execute("UPDATE fetch_job SET lease_expires_at = :p", {"p": past()})
    )
    assert await claims.renew() == 1
    row = await db.fetchone("SELECT lease_expires_at FROM fetch_job")
    assert row is not None
    soon = to_iso(utcnow() + timedelta(seconds=LEASE_SECONDS / 2))
    assert row[0] > soon


async def test_ending_a_job_queues_the_next_in_the_same_transaction(
    db: Database, tmp_path: Path
) -> None:
    (source,) = (await sources(db, tmp_path, ["http://a.example/feed"])).values()
    claims, jobs = ClaimRepo(db, "d1"), FetchJobRepo(db)
    due, later = past(), future()
    await claims.queue_missing({source: due})
    (claim,) = await claims.claim_due(1, 1)
    following = NextJob(later, failures=2, fetch_url="http://moved.example/", moved_seen=2)
    failed = await jobs.mark_failed(claim.job.id, ErrorCode.TIMEOUT, "slow", next_job=following)
    assert failed is not None
    rows = await db.fetchall(
        "SELECT status, not_before, failures, fetch_url, moved_seen FROM fetch_job ORDER BY id"
    )
    assert [tuple(row) for row in rows] == [
        ("FAILED", due, 0, None, 0),
        ("QUEUED", later, 2, "http://moved.example/", 2),
    ]
    assert await claims.claim_due(1, 1) == [], "not due before its time"
    # A late completion of the ended job writes nothing, queues nothing.
    assert await jobs.mark_completed(claim.job.id, FetchMeta(), next_job=NextJob(past())) is None
    assert len(await jobs_of(db)) == 2


async def test_a_manual_claim_takes_the_queued_job_or_makes_one(
    db: Database, tmp_path: Path
) -> None:
    ids = await sources(db, tmp_path, ["http://a.example/feed", "http://b.example/feed"])
    scheduled, fresh = ids.values()
    claims = ClaimRepo(db, "cli")
    await claims.queue_missing({scheduled: future()})
    taken = await claims.claim_source(scheduled)
    assert taken is not None and taken.scheduled, "the schedule's job, whatever its time"
    made = await claims.claim_source(fresh)
    assert made is not None and not made.scheduled
    assert await claims.claim_source(fresh) is None, "one ONGOING job per source"
    assert {(s, status) for s, status, _ in await jobs_of(db)} == {
        (scheduled, "ONGOING"),
        (fresh, "ONGOING"),
    }


async def test_renew_extends_only_the_holders_jobs(db: Database, tmp_path: Path) -> None:
    """A fetch run by hand renews through its pipeline's one renewer (ClaimRepo.renew):
    its own jobs, never another holder's, which expire and are taken back."""
    ids = await sources(db, tmp_path, ["http://a.example/feed", "http://b.example/feed"])
    mine, theirs = ClaimRepo(db, "cli"), ClaimRepo(db, "daemon")
    one, two = ids.values()
    claim = await mine.claim_source(one)
    other = await theirs.claim_source(two)
    assert claim is not None and other is not None
    await db.write(
        lambda tx: tx.execute("UPDATE fetch_job SET lease_expires_at = :p", {"p": past()})
    )
    assert await mine.renew() == 1
    assert await theirs.take_back() == [other.job.id]


async def test_the_oldest_due_job_is_claimed_first_whatever_its_host(
    db: Database, tmp_path: Path
) -> None:
    ids = await sources(db, tmp_path, ["http://a.example/feed", "http://z.example/feed"])
    first, later = ids["http://z.example/feed"], ids["http://a.example/feed"]
    claims = ClaimRepo(db, "d1")
    older = to_iso(utcnow() - timedelta(hours=2))
    await claims.queue_missing({first: older, later: past()})
    (claim,) = await claims.claim_due(1, 2)
    assert claim.source.id == first


async def test_a_busy_host_does_not_starve_another_hosts_due_job(
    db: Database, tmp_path: Path
) -> None:
    """More due jobs on one saturated host than a claim reads per page, all due before the
    one job of another host: that job is still found and claimed."""
    busy = [f"http://busy.example/feed{i}" for i in range(CANDIDATE_PAGE + 50)]
    ids = await sources(db, tmp_path, [*busy, "http://quiet.example/feed"])
    claims = ClaimRepo(db, "d1")
    oldest = utcnow() - timedelta(hours=3)
    await claims.queue_missing(
        {ids[url]: to_iso(oldest + timedelta(seconds=i)) for i, url in enumerate(busy)}
        | {ids["http://quiet.example/feed"]: past()}
    )
    (first,) = await claims.claim_due(1, 1)
    assert first.source.url == busy[0], "the oldest due job goes first"
    (second,) = await claims.claim_due(1, 1)
    assert second.source.url == "http://quiet.example/feed"
    assert await claims.claim_due(5, 1) == [], "busy.example's one slot is still taken"


async def test_a_busy_hosts_backlog_due_at_one_instant_is_paged_through(
    db: Database, tmp_path: Path, *, backend: str
) -> None:
    """More due jobs on one saturated host than a page, all due at one instant finer than
    the millisecond (PostgreSQL's now(); rows read back to the millisecond), before the
    job of another host: the claim pages past them and finds it. Paged by (due, id), the
    read-back due time was less than the stored one, and the claim read the first page
    for ever (its writer thread with it)."""
    busy = [f"http://busy.example/feed{i}" for i in range(CANDIDATE_PAGE + 50)]
    ids = await sources(db, tmp_path, [*busy, "http://quiet.example/feed"])
    claims = ClaimRepo(db, "d1")
    await claims.queue_missing(dict.fromkeys(ids.values(), past()))
    if backend == "postgresql":  # microseconds, as now() writes them
        instant, later = "now() - interval '1 minute'", "now()"
    else:
        instant, later = "'2026-01-01T00:00:00.123456Z'", "'2026-01-01T00:00:00.124Z'"
    quiet = {"id": ids["http://quiet.example/feed"]}
    await db.write(lambda tx: tx.execute(f"UPDATE fetch_job SET not_before = {instant}"))
    await db.write(
        lambda tx: tx.execute(
            f"UPDATE fetch_job SET not_before = {later} WHERE content_source_id = :id", quiet
        )
    )
    (first,) = await asyncio.wait_for(claims.claim_due(1, 1), 30)
    assert first.source.url.startswith("http://busy.example/")
    (second,) = await asyncio.wait_for(claims.claim_due(1, 1), 30)
    assert second.source.url == "http://quiet.example/feed"
    assert await asyncio.wait_for(claims.claim_due(5, 1), 30) == []


async def test_an_ongoing_job_without_a_lease_is_taken_back(db: Database, tmp_path: Path) -> None:
    """Such a row (copied from an SQLite database, say) has no daemon to renew it: left
    alone it would block its source for good."""
    ids = await sources(db, tmp_path, ["http://a.example/feed", "http://b.example/feed"])
    claims = ClaimRepo(db, "d1")
    await claims.queue_missing(dict.fromkeys(ids.values(), past()))
    orphan, _live = await claims.claim_due(2, 1)
    await db.write(
        lambda tx: tx.execute(
            "UPDATE fetch_job SET lease_expires_at = NULL, claimed_by = NULL WHERE id = :id",
            {"id": orphan.job.id},
        )
    )
    assert await claims.take_back() == [orphan.job.id], "the live lease is kept"
    (again,) = await claims.claim_due(5, 1)
    assert again.source.id == orphan.source.id
    assert again.job.id != orphan.job.id


@pytest.mark.parametrize(
    ("holder_skew", "other_skew"),
    [(timedelta(hours=-1), timedelta(0)), (timedelta(0), timedelta(hours=1))],
    ids=["holder-behind", "other-ahead"],
)
async def test_leases_follow_the_database_clock_on_postgresql(
    db: Database,
    tmp_path: Path,
    *,
    backend: str,
    holder_skew: timedelta,
    other_skew: timedelta,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Daemons on several machines: one whose clock runs behind writes a lease that looks
    expired to the others, one whose clock runs ahead sees every lease as expired. With the
    database's clock neither takes back a live job. (SQLite is one machine, one clock.)"""
    if backend == "sqlite":
        pytest.skip("one machine, one clock: SQLite leases use the daemon's clock")
    ids = await sources(db, tmp_path, ["http://a.example/feed"])
    holder, other = ClaimRepo(db, "holder"), ClaimRepo(db, "other")
    await holder.queue_missing(dict.fromkeys(ids.values(), to_iso(utcnow() - timedelta(hours=2))))
    # Each daemon's machine runs off by its skew: the holder claims and renews...
    monkeypatch.setattr(claims_module, "utcnow", lambda: utcnow() + holder_skew)
    (claim,) = await holder.claim_due(1, 1)
    assert await holder.renew() == 1
    # ... and the other, on its own clock, looks for expired leases.
    monkeypatch.setattr(claims_module, "utcnow", lambda: utcnow() + other_skew)
    assert await other.take_back() == [], "a live lease was taken back"
    row = await db.fetchone(
        "SELECT status, claimed_by FROM fetch_job WHERE id = :id", {"id": claim.job.id}
    )
    assert row is not None and (row[0], row[1]) == ("ONGOING", "holder")


async def test_a_claim_skips_a_row_another_transaction_holds(
    db: Database, db_target: Path | str, tmp_path: Path, *, backend: str
) -> None:
    """On PostgreSQL a claim skips a QUEUED row another daemon's claim has locked and takes
    the next one at once, instead of waiting on the lock (``FOR UPDATE SKIP LOCKED``).
    Whether the claim waits is read from the server (a backend waiting on a lock), not
    from a clock."""
    if backend == "sqlite":
        pytest.skip("SQLite claims under BEGIN IMMEDIATE: there is no row lock to skip")
    ids = await sources(db, tmp_path, ["http://a.example/feed", "http://b.example/feed"])
    claims = ClaimRepo(db, "d1")
    await claims.queue_missing(
        {ids["http://a.example/feed"]: to_iso(utcnow() - timedelta(hours=1))}
        | {ids["http://b.example/feed"]: past()}
    )
    async with await psycopg.AsyncConnection.connect(str(db_target)) as other:
        held = await other.execute(
            "SELECT id FROM fetch_job WHERE content_source_id = %s FOR UPDATE",
            (ids["http://a.example/feed"],),
        )
        locked = await held.fetchone()
        assert locked is not None
        held_id = locked[0]
        claim = asyncio.ensure_future(claims.claim_due(2, 2))
        watching = psycopg.AsyncConnection.connect(str(db_target), autocommit=True)
        async with await watching as watcher:  # autocommit: a fresh view at each look
            while not claim.done():
                waiting = await watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
                count = await waiting.fetchone()
                if count is not None and count[0] > 0:
                    await other.rollback()  # let the claim finish before failing
                    await claim
                    pytest.fail("the claim waited on the row another transaction holds")
                await asyncio.sleep(0.01)
        claimed = await claim
        await other.rollback()
    assert [c.source.id for c in claimed] == [ids["http://b.example/feed"]]
    row = await db.fetchone("SELECT status FROM fetch_job WHERE id = :id", {"id": held_id})
    assert row is not None and row[0] == "QUEUED"


async def test_many_jobs_queued_at_once_refresh_the_planners_statistics(
    db: Database, tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first start queues every feed's job at once; PostgreSQL's planner, without
    statistics until autovacuum's first ANALYZE, sorted every due job for each claim. So
    reconcile refreshes them after ANALYZE_AFTER jobs queued at once (SQLite needs none:
    nothing to run)."""
    monkeypatch.setattr(reconcile_module, "ANALYZE_AFTER", 3)
    rng = random.Random(1)
    repo = ClaimRepo(db, "d")

    async def analyzed() -> int:
        row = await db.fetchone(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'fetch_job'"
        )
        return int(row[0]) if row else 0

    few = await sources(db, tmp_path, ["http://a.example/1", "http://a.example/2"])
    if backend == "sqlite":
        assert db.dialect.analyze_jobs == ""
        await repo.refresh_statistics()  # nothing to do, and no error
        assert await reconcile(db, repo, rng) == 2
        return
    before = await analyzed()
    assert await reconcile(db, repo, rng) == 2  # too few to matter
    more = [f"http://b.example/{n}" for n in range(3)]
    await sources(db, tmp_path, [*few, *more])
    assert await reconcile(db, repo, rng) == 3
    for _ in range(50):  # the statistics collector reports a moment later
        if await analyzed() > before:
            break
        await asyncio.sleep(0.1)
    assert await analyzed() >= before + 1
