"""config_sync: several daemons with different copies of config.toml do not flap feeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from rssd.repo.config_sync import Synced, Verdict, config_hash, judge, sync_config, synced_config
from rssd.repo.db import Database
from rssd.repo.sources import SourceRepo
from tests.support.config import make_config

pytestmark = pytest.mark.both_backends

OLD, NEW = "2026-11-30T10:00:00.000Z", "2026-11-30T11:00:00.000Z"
A, B = "http://a.example/feed", "http://b.example/feed"


@pytest.mark.parametrize(
    ("stored", "file_hash", "mtime", "verdict"),
    [
        (None, "h1", OLD, Verdict.APPLY),
        (Synced("h1", NEW, NEW, "d1"), "h1", OLD, Verdict.APPLY),  # the same config
        (Synced("h1", OLD, OLD, "d1"), "h2", NEW, Verdict.APPLY),  # a newer file
        (Synced("h1", NEW, NEW, "d1"), "h2", NEW, Verdict.APPLY),  # as new: last one wins
        (Synced("h2", NEW, NEW, "d1"), "h1", OLD, Verdict.DRIFT),  # an older, other file
    ],
)
def test_judge(stored: Synced | None, file_hash: str, mtime: str, verdict: Verdict) -> None:
    assert judge(stored, file_hash, mtime) is verdict


def test_the_hash_ignores_the_database_and_follows_the_feeds(tmp_path: Path) -> None:
    one = make_config(tmp_path / "x", [A])
    assert config_hash(one) == config_hash(make_config(tmp_path / "y", [A]))
    assert config_hash(one) != config_hash(make_config(tmp_path / "x", [A, B]))


async def test_an_older_file_does_not_undo_a_newer_sync(db: Database, tmp_path: Path) -> None:
    old, new = make_config(tmp_path, [A]), make_config(tmp_path, [A, B])
    first = await sync_config(db, new, file_mtime=NEW, daemon_id="d-new", guard=True)
    assert first.verdict is Verdict.APPLY
    drift = await sync_config(db, old, file_mtime=OLD, daemon_id="d-old", guard=True)
    assert drift.verdict is Verdict.DRIFT and drift.report is None
    enabled = {s.url for s in await SourceRepo(db).list(enabled_only=True)}
    assert enabled == {A, B}, "B was not disabled by the older file"
    synced = await synced_config(db)
    assert synced is not None
    assert (synced.config_hash, synced.synced_by) == (config_hash(new), "d-new")
    # Unguarded (one daemon owns a SQLite file), the file is the truth.
    owned = await sync_config(db, old, file_mtime=OLD, daemon_id="d-old", guard=False)
    assert owned.report is not None and owned.report.disabled == (B,)


async def test_the_same_config_synced_twice_changes_nothing(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, [A, B])
    await sync_config(db, config, file_mtime=NEW, daemon_id="d1", guard=True)
    again = await sync_config(db, config, file_mtime=OLD, daemon_id="d2", guard=True)
    assert again.verdict is Verdict.APPLY
    assert again.report is not None and not again.report.changed
