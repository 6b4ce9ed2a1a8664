"""The process's exit codes, shared by every command and by ``rssd run``; a module of its
own, beneath both, so the daemon needs nothing from the command line's layer.

0 ok; 1 something is wrong (bad config, no usable database, a fetch failed, a failing feed
with ``status --failing``, a malformed OPML); 2 usage (bad arguments, an unknown FEED);
3 ``rssd fetch`` refused because the feed is being fetched right now.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BUSY = 3
