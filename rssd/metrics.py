"""Prometheus metrics, written as a file for node_exporter's textfile collector.

rssd has no web layer, so nothing is scraped from it: with ``metrics_file`` set, the daemon
writes this module's registry to that file with prometheus_client's ``write_to_textfile``
(a temporary file renamed over the old one, so the collector never reads half a file)
every ``WRITE_SECONDS`` and once more at exit.

This module owns the one registry. A subsystem adds its metric here, next to the others,
and updates it where the thing happens; names start with ``rssd_``. Labels take values from
small fixed sets only (outcomes, error codes, states): never a feed's URL or id, which
would make one series per feed.

Counters count from the process start (Prometheus handles the reset at a restart);
gauges are set by the daemon just before each write (``Service._update_metrics``).
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    write_to_textfile,
)

WRITE_SECONDS = 15.0

# The ``*_created`` series (each counter's creation time) double the file and say nothing
# a restart does not: off, for the process (the daemon is the only user of the library).
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY = CollectorRegistry(auto_describe=True)

FETCHES = Counter(
    "rssd_fetches",
    "Fetch attempts that ended, by outcome (parsed, not_modified, unchanged, failed, "
    "skipped) and error_code (empty unless failed).",
    ["outcome", "error_code"],
    registry=REGISTRY,
)
FETCH_DURATION = Histogram(
    "rssd_fetch_duration_seconds",
    "Time from queuing a fetch job to recording its outcome.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
HOST_HELD = Counter(
    "rssd_host_politeness_held",
    "Requests held back by host politeness: made to wait for host_min_gap_seconds after "
    "the previous start to their host, or for its pause (a 429/503 Retry-After) to end.",
    registry=REGISTRY,
)
POSTS = Counter(
    "rssd_posts",
    "Posts written to the database, by change (new, updated).",
    ["change"],
    registry=REGISTRY,
)
SOURCES = Gauge(
    "rssd_sources",
    "Sources by state (ok, failing, gone, never_fetched: enabled ones as the scheduler "
    "sees them; disabled: in the database, not scheduled).",
    ["state"],
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "rssd_fetches_in_flight", "Fetches launched and not finished yet.", registry=REGISTRY
)
DUE = Gauge(
    "rssd_sources_due", "Sources due now and not yet launched (the backlog).", registry=REGISTRY
)
OLDEST_OVERDUE = Gauge(
    "rssd_schedule_oldest_overdue_seconds",
    "How long the most overdue source has been waiting past its due time; 0 when none.",
    registry=REGISTRY,
)
LOOP_LAG = Histogram(
    "rssd_event_loop_lag_seconds",
    "How late the event loop woke a 100 ms sleeper, per probe.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
    registry=REGISTRY,
)
PARSE_WORKER_RESTARTS = Counter(
    "rssd_parse_worker_restarts",
    "Parse workers replaced: killed as runaway, or found dead (crashed, killed).",
    registry=REGISTRY,
)
PARSES = Counter(
    "rssd_parses",
    "Documents parsed, by the parser whose result was used (feedparser_rs; feedparser, its "
    "fallback; jsonfeed, rssd's JSON Feed reader).",
    ["parser"],
    registry=REGISTRY,
)
POSTS_STORED = Gauge(
    "rssd_posts_stored",
    "Posts in the database now, whoever stored them (a daemon, rssd fetch in another "
    "process; on PostgreSQL every daemon of the cluster).",
    registry=REGISTRY,
)
DATABASE_BYTES = Gauge(
    "rssd_database_bytes",
    "Size of the database: the SQLite file plus its WAL, or the PostgreSQL database's.",
    registry=REGISTRY,
)
WEBHOOK_DELIVERIES = Counter(
    "rssd_webhook_deliveries",
    "Webhook delivery attempts by outcome (delivered, retry, dead).",
    ["outcome"],
    registry=REGISTRY,
)
NOTIFY_DROPPED = Counter(
    "rssd_notify_dropped",
    "sd_notify datagrams dropped (systemd's socket full or gone) instead of blocking.",
    registry=REGISTRY,
)
DATABASE_WAIT = Gauge(
    "rssd_database_wait_seconds",
    "How long the scheduler has been waiting for one database call (a lock); 0 when not.",
    registry=REGISTRY,
)
CLOCK_SKEW = Gauge(
    "rssd_clock_skew_seconds",
    "The database's clock minus this machine's, measured every minute (0 on SQLite).",
    registry=REGISTRY,
)


def write(path: Path) -> None:
    """Write the registry to ``path`` atomically (temporary file + rename)."""
    write_to_textfile(str(path), REGISTRY)
