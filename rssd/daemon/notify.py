"""sd_notify without a dependency: one datagram to $NOTIFY_SOCKET (abstract ``@`` too).

It runs on the event-loop thread, so it must never wait: a blocking send to a reader that
is slow to drain its queue stalled the whole daemon for ~30 s. The socket is non-blocking;
a datagram the queue has no room for is dropped and counted (``dropped()``, the metric
``rssd_notify_dropped_total``), with a ``notify.dropped`` warning at most once a minute.
systemd loses nothing that matters by it: READY, STATUS and WATCHDOG are sent again.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from rssd import metrics
from rssd.logs import get_logger

log = get_logger("rssd.daemon")

#: At most one ``notify.dropped`` warning per this many seconds (each drop is counted).
WARN_EVERY_SECONDS = 60.0


class _Drops:
    """What could not be sent: a process-wide count, and when we last warned about it."""

    count = 0
    warned_at: float | None = None


def dropped() -> int:
    """How many datagrams were dropped since the process started."""
    return _Drops.count


def _drop(message: str, reason: str) -> None:
    _Drops.count += 1
    metrics.NOTIFY_DROPPED.inc()
    now = time.monotonic()
    if _Drops.warned_at is None or now - _Drops.warned_at >= WARN_EVERY_SECONDS:
        _Drops.warned_at = now
        log.warning(
            "notify.dropped",
            notify_message=message.split("\n", 1)[0],
            reason=reason,
            dropped_total=_Drops.count,
        )


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send ``message`` (e.g. "READY=1") to systemd without blocking; False when not run
    under systemd or when the datagram had to be dropped."""
    address = environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.connect(address)
            sock.send(message.encode())
    except BlockingIOError:
        _drop(message, "queue_full")
        return False
    except OSError as exc:
        _drop(message, type(exc).__name__)
        return False
    return True


def reloading_message() -> str:
    """RELOADING=1 needs MONOTONIC_USEC so systemd can match it to the reload request."""
    return f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when not asked."""
    usec = environ.get("WATCHDOG_USEC")
    pid = environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 1_000_000 / 2
