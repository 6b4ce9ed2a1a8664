"""Prometheus metrics, written as a file for node_exporter's textfile collector.

rssd has no web layer, so nothing is scraped from it: with ``metrics_file`` set, the daemon
writes this module's registry to that file with prometheus_client's ``write_to_textfile``
(a temporary file renamed over the old one, so the collector never reads half a file)
every ``WRITE_SECONDS`` and once more at exit.

This module owns the one registry. A subsystem adds its metric here, next to the others,
and updates it where the thing happens; names start with ``rssd_``. Labels take values from
small fixed sets only (outcomes, error codes, states): never a feed's URL or id, which
would make one series per feed.

Metrics are off until ``enable()``, which imports prometheus_client (~10 ms of CPU here) and
makes the registry: the service turns them on at its start (a reload may set
``metrics_file`` later), ``run --once`` only when ``metrics_file`` is set, and other
commands never; while off, what a metric is told is dropped. Counters count from then
(the process start; Prometheus handles the reset at a restart); gauges are set by the
daemon just before each write (``Service._update_metrics``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

WRITE_SECONDS = 15.0

#: The registry, once enable() has made it (empty while metrics are off).
_REGISTRY: list[CollectorRegistry] = []


class Child(Protocol):
    """A metric's labelled child, as rssd uses it (prometheus_client's, or ``_Off``)."""

    def inc(self, amount: float = 1) -> None: ...

    def set(self, value: float) -> None: ...

    def observe(self, value: float) -> None: ...


class _Off:
    """A labelled child of a metric while metrics are off: it drops what it is told."""

    def inc(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, value: float) -> None:
        pass


_OFF = _Off()
_ALL: list[Metric] = []


class Metric:
    """A counter, gauge or histogram of the registry, made real by enable().

    The calls rssd makes (``inc``, ``set``, ``observe``, ``labels(...)``) go to
    prometheus_client's metric once it exists, and are dropped before."""

    __slots__ = ("_buckets", "_documentation", "_kind", "_labelnames", "_name", "_real")

    def __init__(
        self,
        kind: Literal["counter", "gauge", "histogram"],
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float] | None = None,
    ) -> None:
        self._kind = kind
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._buckets = buckets
        #: prometheus_client's Counter, Gauge or Histogram: typed loosely, as its module
        #: is imported only by enable().
        self._real: Any = None
        _ALL.append(self)

    def _make(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge, Histogram  # noqa: PLC0415

        kind = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[self._kind]
        extra: dict[str, Any] = {"buckets": self._buckets} if self._buckets else {}
        self._real = kind(
            self._name, self._documentation, self._labelnames, registry=registry, **extra
        )

    def labels(self, *values: str) -> Child:
        if self._real is None:
            return _OFF
        child: Child = self._real.labels(*values)
        return child

    def inc(self, amount: float = 1) -> None:
        if self._real is not None:
            self._real.inc(amount)

    def set(self, value: float) -> None:
        if self._real is not None:
            self._real.set(value)

    def observe(self, value: float) -> None:
        if self._real is not None:
            self._real.observe(value)


def enable() -> CollectorRegistry:
    """Turn metrics on, once: the registry and every metric of this module in it."""
    if not _REGISTRY:
        from prometheus_client import CollectorRegistry, disable_created_metrics  # noqa: PLC0415

        # The ``*_created`` series (each counter's creation time) double the file and say
        # nothing a restart does not: off, for the process (the daemon is the only user of
        # the library).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        registry = CollectorRegistry(auto_describe=True)
        for metric in _ALL:
            metric._make(registry)
        _REGISTRY.append(registry)
    return _REGISTRY[0]


FETCHES = Metric(
    "counter",
    "rssd_fetches",
    "Fetch attempts that ended, by outcome (parsed, not_modified, unchanged, failed, "
    "skipped) and error_code (empty unless failed).",
    ["outcome", "error_code"],
)
FETCH_DURATION = Metric(
    "histogram",
    "rssd_fetch_duration_seconds",
    "Time from queuing a fetch job to recording its outcome.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
HOST_HELD = Metric(
    "counter",
    "rssd_host_politeness_held",
    "Requests held back by host politeness: made to wait for host_min_gap_seconds after "
    "the previous start to their host, or for its pause (a 429/503 Retry-After) to end.",
)
POSTS = Metric(
    "counter",
    "rssd_posts",
    "Posts written to the database, by change (new, updated).",
    ["change"],
)
SOURCES = Metric(
    "gauge",
    "rssd_sources",
    "Sources by state (ok, failing, gone, never_fetched: enabled ones as the scheduler "
    "sees them; disabled: in the database, not scheduled).",
    ["state"],
)
IN_FLIGHT = Metric("gauge", "rssd_fetches_in_flight", "Fetches launched and not finished yet.")
DUE = Metric("gauge", "rssd_sources_due", "Sources due now and not yet launched (the backlog).")
OLDEST_OVERDUE = Metric(
    "gauge",
    "rssd_schedule_oldest_overdue_seconds",
    "How long the most overdue source has been waiting past its due time; 0 when none.",
)
LOOP_LAG = Metric(
    "histogram",
    "rssd_event_loop_lag_seconds",
    "How late the event loop woke a 100 ms sleeper, per probe.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)
PARSE_WORKER_RESTARTS = Metric(
    "counter",
    "rssd_parse_worker_restarts",
    "Parse workers replaced: killed as runaway, or found dead (crashed, killed).",
)
PARSES = Metric(
    "counter",
    "rssd_parses",
    "Documents parsed, by the parser whose result was used (feedparser_rs; feedparser, its "
    "fallback; jsonfeed, rssd's JSON Feed reader).",
    ["parser"],
)
POSTS_STORED = Metric(
    "gauge",
    "rssd_posts_stored",
    "Posts in the database now, whoever stored them (a daemon, rssd fetch in another "
    "process; on PostgreSQL every daemon of the cluster).",
)
DATABASE_BYTES = Metric(
    "gauge",
    "rssd_database_bytes",
    "Size of the database: the SQLite file plus its WAL, or the PostgreSQL database's.",
)
WEBHOOK_DELIVERIES = Metric(
    "counter",
    "rssd_webhook_deliveries",
    "Webhook delivery attempts by outcome (delivered, retry, dead).",
    ["outcome"],
)
NOTIFY_DROPPED = Metric(
    "counter",
    "rssd_notify_dropped",
    "sd_notify datagrams dropped (systemd's socket full or gone) instead of blocking.",
)
DATABASE_WAIT = Metric(
    "gauge",
    "rssd_database_wait_seconds",
    "How long the scheduler has been waiting for one database call (a lock); 0 when not.",
)
CLOCK_SKEW = Metric(
    "gauge",
    "rssd_clock_skew_seconds",
    "The database's clock minus this machine's, measured every minute (0 on SQLite).",
)


def write(path: Path) -> None:
    """Write the registry to ``path`` atomically (temporary file + rename)."""
    from prometheus_client import write_to_textfile  # noqa: PLC0415  (enable's import)

    write_to_textfile(str(path), enable())
