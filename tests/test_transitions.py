"""The FetchJob state machine's one table (rssd/repo/transitions.py), checked as a table,
against the statements built from it, and against the rest of rssd: no other module writes
a job's status. What each statement does to real rows, on both backends, is in
tests/test_repo_jobs.py and tests/test_repo_claims.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rssd.models.dto import FetchJobStatus
from rssd.repo import transitions
from rssd.repo.dialect import POSTGRES, SQLITE, Dialect
from rssd.repo.transitions import MOVES, Move, can_move

QUEUED, ONGOING = FetchJobStatus.QUEUED, FetchJobStatus.ONGOING
COMPLETED, FAILED = FetchJobStatus.COMPLETED, FetchJobStatus.FAILED
ROOT = Path(__file__).resolve().parent.parent

STATES: list[FetchJobStatus | None] = [None, *FetchJobStatus]

#: Every (from, to) pair and whether it is allowed: the whole square, written out.
EXPECTED = {
    (None, QUEUED): True,
    (None, ONGOING): True,
    (None, COMPLETED): False,  # a job is fetched before it ends
    (None, FAILED): False,
    (QUEUED, ONGOING): True,
    (QUEUED, FAILED): True,
    (QUEUED, COMPLETED): False,  # never claimed, never fetched
    (QUEUED, None): True,  # a plan dropped
    (ONGOING, COMPLETED): True,
    (ONGOING, FAILED): True,
    (ONGOING, QUEUED): False,  # taken back means FAILED interrupted, plus a new job
    (ONGOING, None): False,  # an attempt is history
    (COMPLETED, None): False,  # prune deletes old history, not a move of the machine
    (FAILED, None): False,
}


def test_the_square_is_written_out_whole() -> None:
    expected = {
        (a, b): EXPECTED.get((a, b), False)
        for a in STATES
        for b in STATES
        if not (a is None and b is None)
    }
    assert {pair for pair, ok in expected.items() if ok} == MOVES
    for (source, target), ok in expected.items():
        assert can_move(source, target) is ok, (source, target)


@pytest.mark.parametrize("status", [COMPLETED, FAILED])
def test_a_finished_job_never_moves_again(status: FetchJobStatus) -> None:
    assert not any(can_move(status, target) for target in STATES)


def test_a_move_the_table_does_not_allow_cannot_be_declared() -> None:
    with pytest.raises(ValueError, match="no move from"):
        Move("revive", (FAILED,), ONGOING)
    with pytest.raises(ValueError, match="no move from"):
        Move("complete unclaimed", (QUEUED, ONGOING), COMPLETED)


@pytest.mark.parametrize("move", transitions.ALL, ids=lambda m: m.name)
def test_each_declared_move_is_allowed(move: Move) -> None:
    for source in move.leaves or (None,):
        assert can_move(source, move.enters)


def _leaves(sql: str) -> set[str]:
    """The statuses a statement's WHERE requires (``status IN (...)``, or ``status = ...``
    for one: not the SET's)."""
    found = re.findall(r"status IN \(([^)]*)\)", sql) + re.findall(
        r"(?:WHERE|AND) status = ('\w+')", sql
    )
    assert len(found) == 1, sql
    return {name.strip(" '") for name in found[0].split(",")}


def _enters(sql: str) -> str | None:
    found = (
        re.search(r"SET status = '(\w+)'", sql)
        or re.search(r"VALUES \(:source_id, '(\w+)'", sql)
        or re.search(r"SELECT n_source_id, '(\w+)'", sql)
    )
    return found.group(1) if found else None


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=lambda d: d.name)
def test_each_statement_leaves_and_enters_what_its_move_says(dialect: Dialect) -> None:
    columns = "id"
    updates = [
        (transitions.claim_many(dialect), transitions.CLAIM),
        (transitions.complete(dialect, columns), transitions.COMPLETE),
        (transitions.complete_many(dialect, columns), transitions.COMPLETE),
        (transitions.fail(dialect, columns), transitions.FAIL),
        (transitions.take_back(dialect, everything=True), transitions.TAKE_BACK),
        (transitions.take_back(dialect, everything=False), transitions.TAKE_BACK),
        (transitions.fail_stale(dialect), transitions.TAKE_BACK),
    ]
    for sql, move in updates:
        assert _leaves(sql) == {status.value for status in move.leaves}, sql
        assert move.enters is not None and _enters(sql) == move.enters.value, sql
    inserts = [
        (transitions.QUEUE_NEXT, transitions.QUEUE),
        (transitions.QUEUE_DUE, transitions.QUEUE),
        (transitions.queue_next_many(dialect), transitions.QUEUE),
        (transitions.start_many(dialect), transitions.START_BY_HAND),
    ]
    for sql, move in inserts:
        assert "ON CONFLICT DO NOTHING" in sql  # the one-active-job index decides
        assert move.enters is not None and _enters(sql) == move.enters.value, sql
    assert _leaves(transitions.UNQUEUE_SOURCE) == {"QUEUED"}


#: Statements that write fetch_job's status, wherever they are.
_WRITES_STATUS = re.compile(
    r"UPDATE fetch_job SET status|INSERT INTO fetch_job|DELETE FROM fetch_job WHERE status",
    re.IGNORECASE,
)


def test_no_other_module_writes_a_jobs_status() -> None:
    """One home: a transition written anywhere else would escape the table above. (The
    schema's migrations may rewrite old rows: they are not the state machine.)"""
    writers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "rssd").rglob("*.py")
        if _WRITES_STATUS.search(path.read_text(encoding="utf-8"))
    )
    assert writers == ["rssd/repo/transitions.py"]
