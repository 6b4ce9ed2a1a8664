"""Issue 20.9: ``secret_file`` and ``headers_file`` get the checks config.toml gets.

Before: a FIFO hung ``check-config`` (and every load), ``headers_file = "/dev/zero"`` grew
the process to 6.7 GB in seconds, and a symlink to a 0644 file was taken silently. Now
both are read as regular files only (rssd.models.files), capped, and a file every user
of the machine may read is warned about (the link's target is what counts). The
commands run as real processes, under an address-space limit, so that the old behaviour
fails the test instead of the machine.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rssd.models.config import MAX_HEADERS_FILE_BYTES
from tests.support.process import Finished, run_rssd
from tests.support.webhooks import SECRETS

#: ``python -m rssd`` with at most 1 GiB of address space.
LIMITED = (
    "import resource, runpy, sys; "
    "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
    "sys.argv = ['rssd', *sys.argv[1:]]; "
    "runpy.run_module('rssd', run_name='__main__')"
)


async def rssd_limited(*args: str | Path) -> Finished:
    """``rssd ARGS`` bounded in memory, and in time far below the suite's hang guard."""
    argv = [sys.executable, "-c", LIMITED, *map(str, args)]
    return await run_rssd(argv=argv, timeout=60)


def write(
    tmp_path: Path, *, secret_file: str | None = None, headers_file: str | None = None
) -> Path:
    lines = ['database = "rssd.sqlite3"', "[[feeds]]", 'url = "http://127.0.0.1:9/feed"']
    if headers_file is not None:
        lines.append(f'headers_file = "{headers_file}"')
    if secret_file is not None:
        lines += [
            "[[users]]",
            'name = "alice"',
            'webhook_url = "http://127.0.0.1:9/hook"',
            f'secret_file = "{secret_file}"',
        ]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def special(tmp_path: Path, kind: str) -> str:
    if kind == "fifo":
        fifo = tmp_path / "secret.fifo"
        os.mkfifo(fifo)
        return str(fifo)
    return "/dev/zero"


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
@pytest.mark.parametrize("key", ["secret_file", "headers_file"])
async def test_a_fifo_or_a_device_is_refused_unread(tmp_path: Path, key: str, kind: str) -> None:
    config = write(tmp_path, **{key: special(tmp_path, kind)})
    checked = await rssd_limited("check-config", "-c", config)
    assert not checked.timed_out, "check-config hung"
    assert checked.returncode == 1, checked.stderr
    assert "not a regular file" in checked.stderr
    assert f"{key}: cannot read" in checked.stderr
    # The daemon refuses it the same way, at once (a reload would keep the old config).
    ran = await rssd_limited("run", "--once", "-c", config)
    assert (ran.timed_out, ran.returncode) == (False, 1)
    assert "not a regular file" in ran.stdout


async def test_a_headers_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.headers"
    big.write_text("# padding\n" * (MAX_HEADERS_FILE_BYTES // 10 + 1))
    big.chmod(0o600)
    checked = await rssd_limited("check-config", "-c", write(tmp_path, headers_file=str(big)))
    assert checked.returncode == 1
    assert f"{big} is larger than 64 KiB" in checked.stderr


async def test_a_secret_readable_by_others_is_warned_about_through_its_link(
    tmp_path: Path,
) -> None:
    target = tmp_path / "real-secret"
    target.write_text(SECRETS["alice"] + "\n")
    target.chmod(0o644)
    link = tmp_path / "secret-link"
    link.symlink_to(target)
    headers = tmp_path / "feed.headers"
    headers.write_text("Authorization: Bearer x\n")
    headers.chmod(0o604)
    config = write(tmp_path, secret_file="secret-link", headers_file="feed.headers")

    checked = await rssd_limited("check-config", "-c", config)
    assert checked.returncode == 0, checked.stderr
    warnings = checked.stderr.splitlines()
    assert warnings == [
        f"{config}: warning: users[0].secret_file: {link} (a link to {target}) is readable "
        "by every user of this machine (mode 0644); make it readable by rssd only (chmod o-r)",
        f"{config}: warning: feeds[0].headers_file: {headers} is readable by every user of "
        "this machine (mode 0604); make it readable by rssd only (chmod o-r)",
    ]
    ran = await rssd_limited("run", "--once", "-c", config)
    exposed = ran.named("config.file_exposed")
    assert [(e["key"], e["target"], e["mode"]) for e in exposed] == [
        ("users[0].secret_file", str(target), "0644"),
        ("feeds[0].headers_file", str(headers), "0604"),
    ]

    target.chmod(0o640)  # group-readable is the systemd LoadCredential= way: no warning
    headers.chmod(0o600)
    quiet = await rssd_limited("check-config", "-c", config)
    assert (quiet.returncode, quiet.stderr) == (0, "")
