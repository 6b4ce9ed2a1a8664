"""ClaimRepo: fetch_job as the work queue that one or several daemons share.

The schedule is in the database: each enabled source has one QUEUED job, due at its
``not_before``, written in the transaction that ended the source's previous job (so what
the daemon learned, a Retry-After, a backoff, a moved URL, survives a restart and is seen
by every daemon). A daemon claims due jobs in batches, marking them ONGOING with a lease
(its id, an expiry it renews while fetching); a job whose lease expired belonged to a
daemon that died, and any daemon takes it back: recorded ``interrupted``, due again at once.

Claims run in one write transaction: ``BEGIN IMMEDIATE`` on SQLite (one writer at a time),
``FOR UPDATE SKIP LOCKED`` on PostgreSQL (daemons claim side by side and never the same
row). Each claimed job also takes one of its host's ``max_per_host`` slots; the unique
index ``fetch_job_host_slot`` forbids two ONGOING jobs in one slot, and a per-host advisory
lock makes the count and the take one step, so the limit holds across all daemons.
Candidates skip hosts whose slots are all taken, so one busy host's backlog cannot hide
other hosts' due jobs. Fetches by hand are claimed in batches too (``claim_sources``). On
PostgreSQL leases are written and judged by the database's clock (``now()``): the daemons'
machines may disagree about the time, the database does not.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

from msgspec import Struct

from rssd.clock import parse_iso, to_iso, utcnow
from rssd.models.dto import FetchJob, Source
from rssd.net.hosts import host_key
from rssd.repo import transitions
from rssd.repo.db import Database, Row, Tx
from rssd.repo.dialect import Dialect
from rssd.repo.fragments import NO_LIMIT
from rssd.repo.rows import JOB_NAMES, SOURCE_NAMES, job_from, source_from
from rssd.repo.transitions import QUEUE_DUE, QUEUE_NEXT, NextJob, next_params

#: A lease this long is renewed every LEASE_SECONDS / 3 while the fetch runs.
LEASE_SECONDS = 30.0

_SOURCE_COLUMNS = ", ".join(f"s.{name} AS s_{name}" for name in SOURCE_NAMES)

_JOB_J = ", ".join(f"j.{name}" for name in JOB_NAMES)

#: What a claim carries beside the job: the schedule's memory.
_CARRIED_NAMES = ("failures", "fetch_url", "moved_seen")
_CARRIED = ", ".join(f"j.{name}" for name in _CARRIED_NAMES)

#: The users subscribed to the source (the default User-Agent names their number).
_SUBSCRIBERS = """(SELECT count(*) FROM subscriptions sub JOIN users u ON u.id = sub.user_id
    WHERE sub.content_source_id = s.id AND u.enabled = 1) AS subscribers"""


class HostBusy(Exception):
    """Every ``max_per_host`` slot of the host is taken (by this or another process)."""

    def __init__(self, host: str) -> None:
        super().__init__(f"every slot of {host} is taken")
        self.host = host


async def _free_slots(tx: Tx, hosts: set[str], max_per_host: int) -> dict[str, list[int]]:
    """Each host's free slots, under its per-host lock (PostgreSQL; one lock order for
    every daemon, in one statement, sent with the count) so that counting and taking are
    one step."""
    if not hosts:
        return {}
    dialect = tx.dialect
    ordered = sorted(hosts)
    keys = [f"rssd.host:{host}" for host in ordered] if dialect.xact_locks else []
    used: dict[str, set[int]] = {host: set() for host in ordered}
    for row in await tx.fetchall_after(
        [dialect.xact_locks] if keys else [],
        f"SELECT host, host_slot FROM fetch_job WHERE status = 'ONGOING' "
        f"AND host_slot IS NOT NULL AND host IN {dialect.in_json_text('hosts')}",
        {"hosts": json.dumps(ordered), "lock_keys": json.dumps(keys)},
    ):
        used[row["host"]].add(int(row["host_slot"]))
    return {
        host: [slot for slot in range(max_per_host) if slot not in taken]
        for host, taken in used.items()
    }


async def _lock(
    tx: Tx, picked: list[tuple[int, str]], room: dict[str, int]
) -> list[tuple[int, str]]:
    """The ``picked`` jobs (id, host) this claim could lock, still QUEUED; those another
    claim holds give their host's room back. Nothing to lock on SQLite, whose claim is
    the only writer (BEGIN IMMEDIATE)."""
    if not picked or not tx.dialect.skip_locked:
        return picked
    rows = await tx.fetchall(
        f"SELECT j.id FROM fetch_job j WHERE j.id IN {tx.dialect.in_json_int('ids')} "
        f"AND j.status = 'QUEUED'{tx.dialect.skip_locked}",
        {"ids": json.dumps([job_id for job_id, _ in picked])},
    )
    locked = {int(row["id"]) for row in rows}
    for job_id, host in picked:
        if job_id not in locked:
            room[host] += 1
    return [(job_id, host) for job_id, host in picked if job_id in locked]


class Claim(Struct, frozen=True):
    """An ONGOING job this process holds, with its source and the schedule's memory."""

    job: FetchJob
    source: Source
    failures: int  # consecutive failures before this attempt
    fetch_url: str | None  # where the source moved to (None: its configured URL)
    moved_seen: int
    #: The job was the source's QUEUED schedule entry, so its end queues the next one.
    scheduled: bool = True
    #: Enabled users subscribed to the source.
    subscribers: int = 0


#: Where ``_load``'s columns are: the job's, the ones it carries, the subscribers, then
#: the source's.
_CARRIED_AT = len(JOB_NAMES)
_SOURCE_AT = _CARRIED_AT + len(_CARRIED_NAMES) + 1


def _claim(row: Row, scheduled: bool = True) -> Claim:
    """A claim from a row of ``_load``'s query, its columns read by position: by name, the
    lookups of a batch of claims were a third of the claim's time on PostgreSQL (a
    Python ``__getitem__`` each, where sqlite3.Row's is C)."""
    values = tuple(row)
    failures, fetch_url, moved_seen, subscribers = values[_CARRIED_AT:_SOURCE_AT]
    return Claim(
        job_from(values[:_CARRIED_AT]),
        source_from(values[_SOURCE_AT:]),
        failures,
        fetch_url,
        moved_seen,
        scheduled,
        int(subscribers),
    )


class ClaimRepo:
    def __init__(self, db: Database, daemon_id: str) -> None:
        self._db = db
        self.daemon_id = daemon_id

    def _lease(self, now: datetime) -> dict[str, object]:
        """The parameters of the dialect's ``lease_until``: both clocks' versions."""
        return {
            "lease": to_iso(now + timedelta(seconds=LEASE_SECONDS)),
            "lease_seconds": LEASE_SECONDS,
        }

    async def _candidates(
        self, tx: Tx, stamp: str, wanted: int, max_per_host: int
    ) -> list[tuple[int, str]]:
        """Up to ``wanted`` due jobs (id, host), oldest due first, each with room in its
        host's slots as far as this read knows: a long run of due jobs on one busy host
        must not hide the other hosts' due jobs behind it, nor fill the batch with jobs
        that would find no slot. The claim counts the slots again under the hosts' locks,
        so a stale view here costs a smaller batch, never a broken limit.

        On PostgreSQL the jobs picked from each page are then locked, skipping those
        another daemon's claim holds (``SKIP LOCKED``), and the next page makes up for
        them: claims side by side take different jobs. Picked but never made up for, every
        claimer but one found the same oldest jobs taken and claimed nothing
        (bench/cluster.py: 1 to 8 claimers, no faster than one). Pages are read without
        locks: due jobs waiting behind full hosts are passed by every claim, and locking
        each of them was a write per row per claim (three daemons over 1,000 due jobs spent
        their time there)."""
        room: dict[str, int] = {
            str(row["host"]): max_per_host - int(row["n"])
            for row in await tx.fetchall(
                "SELECT host, count(*) AS n FROM fetch_job WHERE status = 'ONGOING' "
                "AND host_slot IS NOT NULL GROUP BY host"
            )
        }
        # Hosts paused by a 429/503's Retry-After (rssd/repo/hosts.py): none of their jobs
        # is claimed until the pause ends, whichever feed of the host it is.
        for row in await tx.fetchall(
            f"SELECT host FROM hosts WHERE paused_until > {tx.dialect.clock}", {"now": stamp}
        ):
            room[str(row["host"])] = 0
        found: list[tuple[int, str]] = []
        # Pages by due time: the next starts at the last one's (a time read back to the
        # millisecond, at or before the stored one) and leaves out the jobs already read
        # at that time. Keyed on (due time, id), a stored time finer than the millisecond
        # read back as less than itself, and a run of 200 jobs due at one such time gave
        # the same page for ever (bench/cluster.py's daemons, all due at one now()).
        after: str | None = None
        read_at_after: list[int] = []
        while len(found) < wanted:
            since = "" if after is None else _AFTER.format(read=tx.dialect.in_json_int("read"))
            rows = await tx.fetchall(
                due_page(tx.dialect, since),
                {"now": stamp, "page": PAGE, "after": after, "read": json.dumps(read_at_after)},
            )
            picked: list[tuple[int, str]] = []
            for row in rows:
                host = host_key(row["target"])
                if len(found) + len(picked) < wanted and room.get(host, max_per_host) > 0:
                    picked.append((int(row["id"]), host))
                    room[host] = room.get(host, max_per_host) - 1
            found.extend(await _lock(tx, picked, room))
            if len(rows) < PAGE:
                break
            last = str(rows[-1]["not_before"])
            read_at_after = [*(read_at_after if last == after else []), *(
                int(row["id"]) for row in rows if str(row["not_before"]) == last
            )]  # fmt: skip
            after = last
        return found

    async def claim_due(self, limit: int, max_per_host: int) -> list[Claim]:
        """Up to ``limit`` due jobs of enabled sources, oldest due first, each in a free
        slot of its host; ONGOING under this daemon's lease when this returns."""
        if limit <= 0:
            return []
        # A plain read first: an idle daemon polling every second takes no write lock (on
        # SQLite, BEGIN IMMEDIATE would hold off every other writer for nothing).
        if await self.count_due(limit=1) == 0:
            return []

        async def work(tx: Tx) -> list[Claim]:
            now = await tx.now()
            stamp = to_iso(now)
            # Locked (PostgreSQL) or alone (SQLite's BEGIN IMMEDIATE): ours to claim.
            due = await self._candidates(tx, stamp, limit, max_per_host)
            if not due:
                return []
            free = await _free_slots(tx, {host for _, host in due}, max_per_host)
            taken: list[dict[str, object]] = []
            for job_id, host in due:  # oldest due first, wherever its host sorts
                if free[host]:
                    taken.append({"job_id": job_id, "c_host": host, "c_slot": free[host].pop(0)})
            if not taken:
                return []
            # Each update took; loading only what this daemon now holds makes sure of it.
            return await self._load(
                tx,
                [int(str(t["job_id"])) for t in taken],
                holder=True,
                after=transitions.claim_many(tx.dialect),
                params={"now": stamp, "jobs": json.dumps(taken)} | self._lease(now),
            )

        return await self._db.write(work)

    async def claim_source(self, source_id: int, max_per_host: int | None = None) -> Claim | None:
        """A fetch asked for by hand (``rssd fetch``): ``claim_sources`` of one source,
        raising HostBusy (having changed nothing) when every slot of its host is taken."""
        claimed = (await self.claim_sources([source_id], max_per_host))[source_id]
        if isinstance(claimed, HostBusy):
            raise claimed
        return claimed

    async def claim_sources(
        self, source_ids: Sequence[int], max_per_host: int | None = None
    ) -> dict[int, Claim | HostBusy | None]:
        """Fetches asked for by hand (``rssd fetch``, ``run --once``), many in one
        transaction: each source's QUEUED job, whatever its due time, else a new ONGOING
        one. Per source: its Claim; None while it has an ONGOING job (or is gone); with
        ``max_per_host``, HostBusy when every slot of its host is taken (that source's
        claim changes nothing, the others' stand), as the daemon's claims take slots, so
        that fetches by hand and every daemon's together keep the per-host limit.

        A few statements for the whole batch: ``run --once`` claiming source by source
        sent seven statements a source, and on PostgreSQL those, not the fetches, set its
        pace (bench/README.md)."""
        wanted = list(dict.fromkeys(source_ids))
        if not wanted:
            return {}

        async def work(tx: Tx) -> dict[int, Claim | HostBusy | None]:
            now = await tx.now()
            params = {"now": to_iso(now), "daemon": self.daemon_id} | self._lease(now)
            rows = await tx.fetchall(
                _BY_HAND.format(ids=tx.dialect.in_json_int("ids")), {"ids": json.dumps(wanted)}
            )
            # A source with an ONGOING job is not claimed (its result stays None).
            found = {int(row["source_id"]): row for row in rows if row["status"] != "ONGOING"}
            hosts = {sid: host_key(row["target"]) for sid, row in found.items()}
            slots = set(hosts.values()) if max_per_host is not None else set()
            free = await _free_slots(tx, slots, max_per_host or 0)
            results: dict[int, Claim | HostBusy | None] = dict.fromkeys(wanted)
            queued: list[dict[str, object]] = []
            started: list[dict[str, object]] = []
            for sid in (sid for sid in wanted if sid in found):
                host, slot = None, None
                if max_per_host is not None:
                    host = hosts[sid]
                    if not free[host]:
                        results[sid] = HostBusy(host)
                        continue
                    slot = free[host].pop(0)
                job_id = found[sid]["job_id"]
                if job_id is None:
                    started.append({"n_source_id": sid, "c_host": host, "c_slot": slot})
                else:
                    queued.append({"job_id": job_id, "c_host": host, "c_slot": slot})
            if queued:
                # Only what this process now holds: a job another process claimed since
                # the read above was not taken (its source's result stays None).
                ids = [int(str(q["job_id"])) for q in queued]
                for claim in await self._load(
                    tx,
                    ids,
                    holder=True,
                    after=transitions.claim_many(tx.dialect),
                    params={"jobs": json.dumps(queued)} | params,
                ):
                    results[claim.source.id] = claim
            if started:  # sources with no job: each run of ``run --once`` without a daemon
                # Read back by source: the sources had no active job, and this process's
                # writes are one at a time, so what it holds of them now is what the
                # insert started (a source that got a job elsewhere meanwhile got none).
                sources = [int(str(n["n_source_id"])) for n in started]
                for claim in await self._load(
                    tx,
                    sources,
                    by_source=True,
                    scheduled=False,
                    after=transitions.start_many(tx.dialect),
                    params={"jobs": json.dumps(started)} | params,
                ):
                    results[claim.source.id] = claim
            return results

        return await self._db.write(work)

    async def _load(
        self,
        tx: Tx,
        ids: Sequence[int],
        *,
        scheduled: bool = True,
        holder: bool = False,
        by_source: bool = False,
        after: str | None = None,
        params: dict[str, object] | None = None,
    ) -> list[Claim]:
        """The claims of jobs ``ids`` (``holder``: only those ONGOING under this daemon;
        ``by_source``: ``ids`` are sources, and their jobs ONGOING under this daemon).
        ``after``: the claim's own statement, with its ``params``, sent first in the same
        round trip (each a round trip on PostgreSQL, and the claims by hand of ``run
        --once`` are a few jobs each)."""
        key = "j.content_source_id" if by_source else "j.id"
        mine = " AND j.status = 'ONGOING' AND j.claimed_by = :daemon" if holder or by_source else ""
        rows = await tx.fetchall_after(
            [after] if after else [],
            f"SELECT {_JOB_J}, {_CARRIED}, {_SUBSCRIBERS}, {_SOURCE_COLUMNS} FROM fetch_job j "
            f"JOIN content_sources s ON s.id = j.content_source_id "
            f"WHERE {key} IN {tx.dialect.in_json_int('ids')}{mine} ORDER BY j.id",
            (params or {}) | {"ids": json.dumps(list(ids)), "daemon": self.daemon_id},
        )
        return [_claim(row, scheduled) for row in rows]

    async def renew(self) -> int:
        """Extend the lease of every job this daemon holds; the count it still holds."""
        now = utcnow()
        return await self._db.write(
            lambda tx: tx.execute(
                f"UPDATE fetch_job SET lease_expires_at = {tx.dialect.lease_until} "
                f"WHERE claimed_by = :daemon AND status = 'ONGOING'",
                {"daemon": self.daemon_id} | self._lease(now),
            )
        )

    async def take_back(self, *, everything: bool = False, leased: bool = False) -> list[int]:
        """ONGOING jobs whose lease expired (or, ``everything``, all ONGOING jobs: SQLite at
        start-up, under the daemon lock) -> FAILED ``interrupted``, each source's next job
        due at once. Returns the jobs taken back.

        A job with no lease counts as expired: no daemon renews it (every claim writes a
        lease), so it came from elsewhere (``rssd copy-database``, an older rssd) and would
        otherwise block its source for good. ``leased``: not those; fetches by hand leave
        them to Pipeline's STALE_JOB_AFTER. Expiry is judged by the dialect's clock: the
        database's own on PostgreSQL, where the daemons' clocks may disagree."""
        sql = transitions.take_back(self._db.dialect, everything=everything, leased=leased)
        message = transitions.RESTARTED if everything else transitions.TAKEN_BACK

        async def work(tx: Tx) -> list[int]:
            now = to_iso(await tx.now())
            rows = await tx.fetchall(sql, {"now": now, "message": message})
            for row in rows:
                carried = NextJob(now, row["failures"], row["fetch_url"], row["moved_seen"])
                await tx.execute(QUEUE_NEXT, next_params(row["content_source_id"], carried, now))
            return sorted(int(row["id"]) for row in rows)

        return await self._db.write(work)

    async def queue_missing(self, due: dict[int, str]) -> int:
        """Queue a job for each source (id -> not_before) that has no active job now.

        ``ON CONFLICT DO NOTHING``: a source that got one meanwhile (another daemon, a job
        that just ended) keeps it. Returns how many were queued.
        """
        if not due:
            return 0

        async def work(tx: Tx) -> int:
            now = to_iso(await tx.now())
            queued = 0
            for source_id, not_before in due.items():
                queued += await tx.execute(
                    QUEUE_DUE, {"source_id": source_id, "now": now, "not_before": not_before}
                )
            return queued

        return await self._db.write(work)

    async def refresh_statistics(self) -> None:
        """Refresh the planner's statistics of the jobs and sources, where the dialect says
        how (``Dialect.analyze_jobs``; nothing on SQLite): after many jobs were queued at
        once (``ANALYZE_AFTER``, rssd/daemon/reconcile.py)."""
        if analyze := self._db.dialect.analyze_jobs:
            await self._db.write(lambda tx: tx.execute(analyze))

    async def overdue_seconds(self) -> float:
        """How long the longest-waiting due job of an enabled source has been due (0: none),
        by the dialect's clock."""
        until = await self.seconds_to_next_due()
        return max(0.0, -until) if until is not None else 0.0

    async def seconds_to_next_due(self) -> float | None:
        """Seconds until the next QUEUED job of an enabled source falls due (negative: it
        is overdue), by the dialect's clock; None when none is queued."""
        row = await self._db.fetchone(
            f"SELECT min(j.not_before) AS due, {self._db.dialect.clock} AS now "
            f"FROM fetch_job j JOIN content_sources s ON s.id = j.content_source_id "
            f"WHERE j.status = 'QUEUED' AND s.enabled = 1",
            {"now": to_iso(utcnow())},
        )
        if row is None or row["due"] is None:
            return None
        return (parse_iso(str(row["due"])) - parse_iso(str(row["now"]))).total_seconds()

    async def count_due(self, limit: int | None = None) -> int:
        """Due jobs of enabled sources now (at most ``limit``, when given). In the claims'
        order, so that PostgreSQL walks the due jobs' index: left to choose, it walked the
        sources in id order looking for one with a due job, past every source already
        claimed (15 ms a call halfway through 20,000 due jobs, bench/cluster.py)."""
        row = await self._db.fetchone(
            f"SELECT count(*) FROM ({due_page(self._db.dialect)}) due",
            {"now": to_iso(utcnow()), "page": NO_LIMIT if limit is None else limit},
        )
        return int(row[0]) if row else 0


#: Each source asked for by hand: its active job (QUEUED or ONGOING; None: it has none)
#: and where that job fetches from, which names its host.
_BY_HAND = (
    "SELECT s.id AS source_id, j.id AS job_id, j.status, coalesce(j.fetch_url, s.url) AS target "
    "FROM content_sources s LEFT JOIN fetch_job j "
    "ON j.content_source_id = s.id AND j.status IN ('QUEUED', 'ONGOING') WHERE s.id IN {ids}"
)

_AFTER = " AND j.not_before >= :after AND j.id NOT IN {read}"


def due_page(dialect: Dialect, since: str = "") -> str:
    """A page of due jobs of enabled sources in the claims' order, read off the
    ``fetch_job_due`` index (not_before, id) rather than sorted; ``since``: ``_AFTER``."""
    return (
        "SELECT j.id, j.not_before, coalesce(j.fetch_url, s.url) AS target "
        "FROM fetch_job j JOIN content_sources s ON s.id = j.content_source_id "
        f"WHERE j.status = 'QUEUED' AND j.not_before <= {dialect.clock} "
        f"AND s.enabled = 1{since} ORDER BY j.not_before, j.id LIMIT :page"
    )


#: Due jobs read per page while choosing a claim's candidates.
PAGE = 200
#: Jobs queued at once (a first start, feeds added in bulk) after which the planner's
#: statistics are refreshed (``ClaimRepo.refresh_statistics``).
ANALYZE_AFTER = 1000
