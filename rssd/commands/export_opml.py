"""``rssd export-opml``: config.toml's feeds as OPML 2.0 on stdout, for another reader
or for ``rssd import-opml`` elsewhere. Reads the config only, never the database."""

from __future__ import annotations

from pathlib import Path

from rssd.clock import utcnow
from rssd.commands import opml
from rssd.commands.context import load
from rssd.commands.errors import EXIT_OK


def main(config_path: Path) -> int:
    config = load(config_path)
    print(opml.render(config.feeds, utcnow()))
    return EXIT_OK
