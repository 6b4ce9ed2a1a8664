"""systemd/rssd.service passes systemd-analyze verify and scores <= 2.0 on security."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rssd.models.config import Config

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
