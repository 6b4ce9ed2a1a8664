"""Exit codes shared by every command, and the error that carries one to ``rssd.cli``.

0 ok; 1 something is wrong (bad config, no usable database, a fetch failed, a failing feed
with ``status --failing``, a malformed OPML); 2 usage (bad arguments, an unknown FEED);
3 ``rssd fetch`` refused because the feed is being fetched right now.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BUSY = 3


class CommandError(Exception):
    """A command cannot go on; ``rssd.cli`` prints the message to stderr and exits."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code
