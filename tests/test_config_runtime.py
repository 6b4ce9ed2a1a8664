"""The config the daemon holds (plain dataclasses, rssd/models/config.py) and the check of
config.toml (pydantic, rssd/models/config_check.py): one set of fields, one result whichever
way a file is read, and a start that skips the check only for the very file it checked."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any

import pytest
import tomli
from pydantic import BaseModel

from rssd.daemon.run import synced_as_is
from rssd.daemon.startup import daemon_session, file_mtime
from rssd.models.config import Config, ConfigError, FeedConfig, config_of, load_config
from rssd.models.config_check import ConfigModel, FeedModel, UserModel, WebhooksModel
from rssd.models.location import config_mtime
from rssd.models.users import UserConfig, WebhooksConfig
from rssd.repo.config_sync import sync_config
from rssd.repo.config_versions import CHECKED_BY, config_hash, synced_check_now
from rssd.repo.db import Database
from tests.support.probe import loaded
from tests.support.process import WAIT

pytestmark = pytest.mark.both_backends

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()

#: Every key config.toml has, most of them set to something other than the default.
EVERY_KEY = f"""
database = "data/rssd.sqlite3"
max_concurrency = 50
max_per_host = 3
host_min_gap_seconds = 2
interval_minutes = 30
min_interval_minutes = 5
max_interval_minutes = 600
timeout_seconds = 20
max_body_mb = 4
max_redirects = 3
user_agent = "MyReader/1.0 (+https://example.org)"
log_level = "debug"
keep_fetch_jobs_days = 30
keep_posts_days = 365
shutdown_grace_seconds = 5
parse_timeout_seconds = 10
sanitize_html = false
allow_private_networks = true
metrics_file = "metrics/rssd.prom"

[webhooks]
timeout_seconds = 10
retry_seconds = [1, 2.5, 60]
allow_private_networks = true

[[feeds]]
url = "  https://example.org/feed.xml "
name = "Example"
interval_minutes = 45
timeout_seconds = 12
category = "Blogs/Linux "
headers = {{ Authorization = "Bearer xyz" }}

[[feeds]]
url = "https://user:pw@example.com/atom"
min_interval_minutes = 1
max_interval_minutes = 90.5
enabled = false
headers_file = "headers.txt"

[[users]]
name = "alice"
webhook_url = "https://hooks.example.org/a"
secret = "{SECRET}"
feeds = ["*"]
keep = ["title=linux"]
block = ["author=spam"]
notify_backlog = true
dedupe_days = 3
include_content = true
digest = "08:00"
timezone = "Europe/Paris"

[[users]]
name = "bob"
webhook_url = "https://ntfy.sh/mytopic"
format = "ntfy"
secret_file = "ntfy.token"
feeds = ["https://example.org/feed.xml"]
"""


def every_key(tmp_path: Path) -> Path:
    """config.toml with every key, and the files it names beside it."""
    for name, text in (("headers.txt", "X-Token: abc\n"), ("ntfy.token", "tk_abcdef123\n")):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o600)
    path = tmp_path / "config.toml"
    path.write_text(EVERY_KEY)
    return path


def trust_all(database: Path | str) -> bool:
    return True


PAIRS: list[tuple[type[BaseModel], type]] = [
    (ConfigModel, Config),
    (FeedModel, FeedConfig),
    (UserModel, UserConfig),
    (WebhooksModel, WebhooksConfig),
]


@pytest.mark.parametrize(("model", "held"), PAIRS)
def test_each_model_checks_the_fields_its_dataclass_holds(
    model: type[BaseModel], held: type
) -> None:
    """One set of keys: a key the check accepts is one the daemon holds, with the same
    default (a default is what an unset key means, whichever way the file was read)."""
    assert list(model.model_fields) == [item.name for item in fields(held)]
    for item in fields(held):
        if item.default is not MISSING:
            default: object = item.default
        elif item.default_factory is not MISSING:
            default = item.default_factory()
        else:
            assert model.model_fields[item.name].is_required(), item.name
            continue
        checked = model.model_fields[item.name].get_default(call_default_factory=True)
        if isinstance(checked, BaseModel):  # [webhooks]: the table's own defaults
            assert checked.model_dump() == asdict(default), item.name  # type: ignore[call-overload]
        else:
            assert checked == default, item.name


def test_the_file_with_every_key_has_every_key() -> None:
    """So that a field added to a table is built both ways below, with its conversion."""
    raw = tomli.loads(EVERY_KEY)
    tables: list[tuple[type, set[str]]] = [
        (Config, set(raw)),
        (WebhooksConfig, set(raw["webhooks"])),
        (FeedConfig, {key for feed in raw["feeds"] for key in feed}),
        (UserConfig, {key for user in raw["users"] for key in user}),
    ]
    for held, keys in tables:
        assert keys == {item.name for item in fields(held)}, held


def test_a_trusted_file_builds_the_config_a_checked_one_does(tmp_path: Path) -> None:
    path = every_key(tmp_path)
    checked = load_config(path, {})
    trusted = load_config(path, {}, trust=trust_all)
    assert trusted == checked
    assert repr(trusted) == repr(checked)  # the same types too: 2.0, not 2
    assert checked.host_min_gap_seconds == 2.0 and type(checked.host_min_gap_seconds) is float
    assert checked.webhooks.retry_seconds == (1.0, 2.5, 60.0)
    assert checked.feeds[0].url == "https://example.org/feed.xml"
    assert checked.feeds[0].category == "Blogs / Linux"
    assert checked.feeds[1].headers == {"X-Token": "abc"}  # headers_file, read at load
    assert checked.users[1].token is not None and checked.users[1].token.text() == "tk_abcdef123"
    assert checked.database == tmp_path / "data" / "rssd.sqlite3"
    assert checked.metrics_file == tmp_path / "metrics" / "rssd.prom"


def test_config_hashes_are_the_ones_synced_before(tmp_path: Path) -> None:
    """The cluster compares these hashes across daemons and versions: a config without
    filters hashes as it did when the config was pydantic models. Filters are hashed by
    their text since (they were hashed as {field, "Pattern"}: an edited regex went
    unnoticed by the versions and the reload's ``edited``)."""
    plain = tmp_path / "plain.toml"
    plain.write_text('[[feeds]]\nurl = "https://a.example/feed"\n')
    assert config_hash(load_config(plain, {})) == "86b0d459f3b76fe1"
    assert config_hash(load_config(every_key(tmp_path), {})) == "a96714b22fee8624"


def test_an_edited_filter_regex_changes_the_hash(tmp_path: Path) -> None:
    path = every_key(tmp_path)
    before = config_hash(load_config(path, {}))
    path.write_text(EVERY_KEY.replace('keep = ["title=linux"]', 'keep = ["title=bsd"]'))
    assert config_hash(load_config(path, {})) != before


@pytest.mark.parametrize(
    "mistake",
    [
        "max_concurency = 3\n",  # a key no dataclass has
        "max_per_host = [2]\n",  # a value no conversion takes
        '[[feeds]]\nurl = "http://b.example/feed"\nenabled = "no"\n',  # builds, misleads
    ],
)
def test_trust_is_not_blind(tmp_path: Path, mistake: str) -> None:
    """A text that cannot be what was checked is checked after all; one that ``trust``
    does not vouch for is checked whatever it is."""
    path = tmp_path / "config.toml"
    path.write_text('[[feeds]]\nurl = "http://a.example/feed"\n' + mistake)
    with pytest.raises(ConfigError):
        load_config(path, {}, trust=lambda database: False)
    if "enabled" not in mistake:
        with pytest.raises(ConfigError):
            load_config(path, {}, trust=trust_all)
    else:  # what trust means: this file was checked as it is (run.py asks the database)
        enabled: object = load_config(path, {}, trust=trust_all).feeds[1].enabled
        assert enabled == "no"


def test_a_trusted_file_reads_the_files_it_names_again(tmp_path: Path) -> None:
    path = every_key(tmp_path)
    (tmp_path / "headers.txt").write_text("Not a header line\n")
    with pytest.raises(ConfigError, match=r"feeds\[1\]\.headers_file"):
        load_config(path, {}, trust=trust_all)
    (tmp_path / "headers.txt").write_text("X-Token: abc\n")
    (tmp_path / "ntfy.token").unlink()
    with pytest.raises(ConfigError, match="secret_file"):
        load_config(path, {}, trust=trust_all)


def test_a_trusted_load_imports_no_pydantic(tmp_path: Path) -> None:
    path = every_key(tmp_path)
    script = (
        "import sys\nfrom pathlib import Path\nfrom rssd.models.config import load_config\n"
        f"load_config(Path({str(path)!r}), {{}}, trust=lambda database: True)\n"
        "print('pydantic' in sys.modules)\n"
        f"load_config(Path({str(path)!r}), {{}})\n"
        "print('pydantic' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=WAIT, check=True
    )
    assert result.stdout.split() == ["False", "True"]


async def test_the_synced_check_is_read_before_the_loop(
    db: Database, db_target: Path | str, tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[feeds]]\nurl = "http://a.example/feed"\n')
    written = path.stat()
    mtime = config_mtime(path)
    assert synced_check_now(db_target) is None  # nothing synced yet
    assert not synced_as_is(path, mtime)(db_target)
    config = config_of({"database": str(db_target), "feeds": [{"url": "http://a.example/feed"}]})
    await sync_config(db, config, file_mtime=file_mtime(path), daemon_id=None, guard=False)
    assert synced_check_now(db_target) == (mtime, CHECKED_BY)
    assert synced_as_is(path, mtime)(db_target)
    os.utime(path, ns=(1, 1))  # another mtime: an edit, after the file was read
    assert not synced_as_is(path, mtime)(db_target)
    assert not synced_as_is(path, config_mtime(path))(db_target)
    os.utime(path, ns=(written.st_atime_ns, written.st_mtime_ns))  # the file synced again
    assert synced_as_is(path, mtime)(db_target)
    await db.write(lambda tx: tx.execute("UPDATE config_sync SET checked_by = '0.0.0'"))
    assert not synced_as_is(path, mtime)(db_target), "another version checked it"


async def test_an_edit_after_the_read_is_checked_at_the_next_start(
    db_target: Path | str, tmp_path: Path
) -> None:
    """The sync records the mtime taken before the file was read: an edit that lands
    while the daemon starts (after the read, before the sync) is not taken as checked."""
    path = tmp_path / "config.toml"
    path.write_text(f"database = {json.dumps(str(db_target))}\n")
    mtime = config_mtime(path)
    config = load_config(path, {})
    path.write_text(path.read_text() + "max_concurrency = 0\n")  # the edit
    os.utime(path, ns=(10**18, 10**18))  # its own mtime, whatever the clock's grain
    async with daemon_session(config, path, mtime=mtime):
        pass
    assert synced_check_now(db_target) == (mtime, CHECKED_BY)
    with pytest.raises(ConfigError, match="max_concurrency"):
        load_config(path, {}, trust=synced_as_is(path, config_mtime(path)))


def test_no_answer_means_check(tmp_path: Path) -> None:
    """A database that is not there (not created by asking), not a file (a FIFO would
    block), or a server that does not answer: nothing is trusted."""
    missing = tmp_path / "none.sqlite3"
    assert synced_check_now(missing) is None
    assert not missing.exists()
    fifo = tmp_path / "fifo.sqlite3"
    os.mkfifo(fifo)
    assert synced_check_now(fifo) is None
    assert synced_check_now("postgresql://postgres@127.0.0.1:9/none") is None


def test_run_once_checks_a_file_only_when_it_changed(tmp_path: Path) -> None:
    """``rssd run --once`` records the file's mtime when it syncs: the next run of the same
    file starts without pydantic; an edited file is checked, and a broken one refused."""
    config = tmp_path / "config.toml"
    config.write_text(
        'database = "rssd.sqlite3"\nhost_min_gap_seconds = 0.0\n'
        '[[feeds]]\nurl = "http://127.0.0.1:9/feed"\n'
    )
    runs: list[Any] = [loaded("run", "--once", "-c", config) for _ in range(2)]
    assert [(code, "pydantic" in modules) for code, modules in runs] == [(0, True), (0, False)]
    config.write_text(config.read_text() + "max_concurency = 3\n")  # a typo, a newer mtime
    code, modules = loaded("run", "--once", "-c", config)
    assert (code, "pydantic" in modules) == (1, True)
