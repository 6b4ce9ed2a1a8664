"""Where the config file is, decided without importing the config models (pydantic): the
CLI resolves it before it knows whether the command needs them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_CONFIG_PATH = Path("config.toml")
CONFIG_ENV = "RSSD_CONFIG"


def resolve_config_path(cli_value: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """``-c``, else ``$RSSD_CONFIG``, else ``./config.toml``."""
    if cli_value:
        return Path(cli_value)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH
