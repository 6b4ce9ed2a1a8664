"""``python peak_rss.py OUT ARGV...``: run ARGV as a child of this small process, write the
child's own peak RSS (KiB, from wait4) to the file OUT, and end as the child did.

A process's ``ru_maxrss`` starts at the RSS of the process that spawned it: the kernel
keeps the peak of the memory image an exec replaces, and a child spawned by the test
process starts as a copy of it. Spawned straight from the suite's process (past 400 MiB
late in a full run), rssd reported that process's peak, not its own. Spawned from this
one (~10 MiB), it reports its own (tests/support/process.py's ``run_rssd``).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def main() -> None:
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    pid = os.fork()
    if pid == 0:  # the child: replaced by the command
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            print(f"peak_rss: {argv[0]}: {exc}", file=sys.stderr)
        os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    out.write_text(str(usage.ru_maxrss))
    if os.WIFSIGNALED(status):  # die of the same signal: the caller sees what it would have
        sig = os.WTERMSIG(status)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
