"""config_sync: several daemons with different copies of config.toml do not flap feeds,
and a file's mtime is no version: only content the cluster has not run yet is applied."""

from __future__ import annotations

from pathlib import Path

import pytest

from rssd.models.config import load_config
from rssd.repo.config_sync import Verdict, judge, sync_config
from rssd.repo.config_versions import config_digests, config_hash, differing_keys, synced_config
from rssd.repo.db import Database
from rssd.repo.sources import SourceRepo
from tests.support.config import make_config

pytestmark = pytest.mark.both_backends

OLD, NEW, NEWER = "2026-11-30T10:00:00.000Z", "2026-11-30T11:00:00.000Z", "2026-11-30T12:00Z"
A, B = "http://a.example/feed", "http://b.example/feed"
SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="


@pytest.mark.parametrize(
    ("current", "file_hash", "superseded", "edited", "verdict"),
    [
        (None, "h1", False, False, Verdict.APPLY),  # nothing synced yet
        ("h1", "h1", True, False, Verdict.APPLY),  # the current version
        ("h1", "h2", False, False, Verdict.APPLY),  # content the cluster never ran: an edit
        ("h2", "h1", True, False, Verdict.DRIFT),  # a version the cluster moved on from
        ("h2", "h1", True, True, Verdict.APPLY),  # edited back on a running daemon
    ],
)
def test_judge(
    current: str | None, file_hash: str, superseded: bool, edited: bool, verdict: Verdict
) -> None:
    assert judge(current, file_hash, superseded=superseded, edited=edited) is verdict


def test_the_hash_ignores_the_database_and_follows_the_feeds(tmp_path: Path) -> None:
    one = make_config(tmp_path / "x", [A])
    assert config_hash(one) == config_hash(make_config(tmp_path / "y", [A]))
    assert config_hash(one) != config_hash(make_config(tmp_path / "x", [A, B]))


def test_byte_identical_files_in_two_folders_hash_the_same(tmp_path: Path) -> None:
    """Relative secret_file, headers_file and metrics_file resolve per folder; each daemon
    may also have its own log level, concurrency and metrics file."""
    hashes = []
    for folder, local in (("one", "max_concurrency = 5"), ("two", 'log_level = "debug"')):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "alice.secret").write_text(SECRET + "\n")
        (tmp_path / folder / "token.headers").write_text("Authorization: Bearer t0k3n\n")
        path = tmp_path / folder / "config.toml"
        path.write_text(
            f'metrics_file = "rssd.prom"\n{local}\n'
            f'[[feeds]]\nurl = "{A}"\nheaders_file = "token.headers"\n'
            f'[[users]]\nname = "alice"\nwebhook_url = "https://hooks.example/a"\n'
            f'secret_file = "alice.secret"\nfeeds = ["*"]\n'
        )
        hashes.append(config_hash(load_config(path)))
    assert hashes[0] == hashes[1]


def test_the_digests_name_the_keys_that_differ(tmp_path: Path) -> None:
    user = {"name": "bob", "webhook_url": "https://h.example/b", "secret": SECRET}
    one = make_config(tmp_path, [A, B], users=[{**user, "feeds": ["*"]}])
    other = make_config(
        tmp_path,
        [A, {"url": B, "enabled": False}],
        users=[{**user, "feeds": ["*"], "keep": ["title=python"]}],
        interval_minutes=30,
    )
    assert differing_keys(config_digests(one), config_digests(other)) == [
        "feeds[http://b.example/feed]",
        "interval_minutes",
        "users[bob]",
    ]
    rotated = make_config(
        tmp_path, [A, B], users=[{**user, "feeds": ["*"], "secret": SECRET.replace("Q", "R")}]
    )
    assert differing_keys(config_digests(one), config_digests(rotated)) == ["users[bob]"]
    assert SECRET not in repr(config_digests(one))


async def test_an_older_file_does_not_undo_a_newer_sync(db: Database, tmp_path: Path) -> None:
    old, new = make_config(tmp_path, [A]), make_config(tmp_path, [A, B])
    first = await sync_config(db, old, file_mtime=OLD, daemon_id="d-old", guard=True)
    assert first.verdict is Verdict.APPLY
    second = await sync_config(db, new, file_mtime=NEW, daemon_id="d-new", guard=True)
    assert second.verdict is Verdict.APPLY
    drift = await sync_config(db, old, file_mtime=OLD, daemon_id="d-old", guard=True)
    assert drift.verdict is Verdict.DRIFT and drift.report is None
    assert drift.differs_in == (f"feeds[{B}]",)
    enabled = {s.url for s in await SourceRepo(db).list(enabled_only=True)}
    assert enabled == {A, B}, "B was not disabled by the older file"
    synced = await synced_config(db)
    assert synced is not None
    assert (synced.config_hash, synced.synced_by) == (config_hash(new), "d-new")
    # Unguarded (one daemon owns a SQLite file), the file is the truth.
    owned = await sync_config(db, old, file_mtime=OLD, daemon_id="d-old", guard=False)
    assert owned.report is not None and owned.report.disabled == (B,)


async def test_touching_a_stale_file_does_not_bring_it_back(db: Database, tmp_path: Path) -> None:
    """A superseded version with the newest mtime of all is still drift; the edit that
    made the current version stays applied (a disabled feed stays disabled)."""
    stale = make_config(tmp_path, [A, B])
    current = make_config(tmp_path, [A, {"url": B, "enabled": False}])
    await sync_config(db, stale, file_mtime=OLD, daemon_id="d1", guard=True)
    await sync_config(db, current, file_mtime=NEW, daemon_id="d2", guard=True)
    touched = await sync_config(db, stale, file_mtime=NEWER, daemon_id="d1", guard=True)
    assert touched.verdict is Verdict.DRIFT
    assert {s.url for s in await SourceRepo(db).list(enabled_only=True)} == {A}
    synced = await synced_config(db)
    assert synced is not None and synced.config_hash == config_hash(current)
    # Edited back on a running daemon (its content changed under it): that is an edit.
    back = await sync_config(db, stale, file_mtime=OLD, daemon_id="d1", guard=True, edited=True)
    assert back.verdict is Verdict.APPLY
    assert {s.url for s in await SourceRepo(db).list(enabled_only=True)} == {A, B}


async def test_the_same_config_synced_twice_changes_nothing(db: Database, tmp_path: Path) -> None:
    config = make_config(tmp_path, [A, B])
    await sync_config(db, config, file_mtime=NEW, daemon_id="d1", guard=True)
    again = await sync_config(db, config, file_mtime=OLD, daemon_id="d2", guard=True)
    assert again.verdict is Verdict.APPLY
    assert again.report is not None and not again.report.changed
