"""The error that carries a message and an exit code (rssd/exits.py) to ``rssd.cli``."""

from __future__ import annotations

from rssd.exits import EXIT_FAILURE


class CommandError(Exception):
    """A command cannot go on; ``rssd.cli`` prints the message to stderr and exits."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
