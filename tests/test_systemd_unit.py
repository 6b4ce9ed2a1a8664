"""systemd/rssd.service passes systemd-analyze verify and scores <= 2.0 on security."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rssd.models.config import Config, load_config

UNIT = Path(__file__).parents[1] / "systemd" / "rssd.service"
INSTALLED_BINARY = "/opt/rssd/venv/bin/rssd"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (.ci/run installs Debian's systemd package)",
)


def _unit_as_installed(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at a real rssd: verify checks the binary exists."""
    rssd = Path(sys.executable).with_name("rssd")
    assert rssd.exists(), "the rssd console script is installed beside the interpreter"
    text = UNIT.read_text()
    assert INSTALLED_BINARY in text
    unit = tmp_path / "rssd.service"
    unit.write_text(text.replace(INSTALLED_BINARY, str(rssd)))
    return unit


def test_unit_verifies_clean(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(_unit_as_installed(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_unit_exposure_is_at_most_2(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(_unit_as_installed(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


@pytest.mark.parametrize(
    "directive",
    [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=rssd",
        "ConfigurationDirectory=rssd",
        "DynamicUser=yes",
    ],
)
def test_unit_declares(directive: str) -> None:
    assert any(line.startswith(directive) for line in UNIT.read_text().splitlines())


def test_stop_timeout_exceeds_default_grace_period() -> None:
    match = re.search(r"^TimeoutStopSec=(\d+)s$", UNIT.read_text(), re.MULTILINE)
    assert match
    assert int(match.group(1)) > Config().shutdown_grace_seconds


README = Path(__file__).parents[1] / "README.md"


def _readme_install_lines() -> list[str]:
    """The README's install block (after "Install (as root):"), one command a line."""
    text = README.read_text()
    block = text.split("Install (as root):\n\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()]


def test_the_readme_install_steps_give_a_unit_that_verifies_and_one_database_for_all(
    tmp_path: Path,
) -> None:
    """The README's steps that write under /etc, run into a scratch root: the unit with
    its credentials drop-in (example lines enabled) passes ``systemd-analyze verify``,
    and the installed config names the same database in the service (``$STATE_DIRECTORY``
    set) as in an operator's shell (nothing set)."""
    root = tmp_path / "root"
    repo = Path(__file__).parents[1]
    for line in _readme_install_lines():
        if "/etc/" not in line or line.startswith("systemctl"):
            continue
        command = line.split("  #")[0].replace("/etc/", f"{root}/etc/")
        (root / "etc" / "systemd" / "system").mkdir(parents=True, exist_ok=True)  # systemd's
        subprocess.run(["bash", "-c", command], cwd=repo, check=True)
    unit_dir = root / "etc" / "systemd" / "system"
    drop_in = unit_dir / "rssd.service.d" / "credentials.conf"
    drop_in.write_text(drop_in.read_text().replace("#LoadCredential=", "LoadCredential="))
    unit = unit_dir / "rssd.service"
    unit.write_text(_unit_as_installed(tmp_path).read_text())
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr

    config = root / "etc" / "rssd" / "config.toml"
    assert config.stat().st_mode & 0o777 == 0o644
    in_service = load_config(config, {"STATE_DIRECTORY": "/var/lib/rssd"}).database
    in_shell = load_config(config, {}).database
    assert in_service == in_shell == Path("/var/lib/rssd/rssd.sqlite3")
