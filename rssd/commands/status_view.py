"""How ``rssd status`` prints: an aligned table for people, a stable JSON document for
machines (the format is documented in README; add keys, never rename or remove them)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from msgspec.structs import asdict

from rssd.clock import parse_iso, to_iso
from rssd.commands.humanize import ago, due, shorten, span, table
from rssd.commands.overview import Assessment, Overview
from rssd.commands.terminal import safe_json, safe_lines
from rssd.models.dto import FetchJob, FetchJobStatus
from rssd.models.redact import redact, redact_optional
from rssd.models.same_feed import SameFeed, same_feeds
from rssd.models.source_state import State

#: Version of the JSON document; bumped only if a key ever has to change meaning.
JSON_FORMAT = 1
NAME_WIDTH = 24
ERROR_WIDTH = 110
STATES = tuple(state.value for state in State)


def attempt_time(job: FetchJob) -> datetime:
    """When an attempt happened: its end, else its start, else when it was queued."""
    return parse_iso(job.ended_at or job.started_at or job.queued_at)


def result_text(job: FetchJob) -> str:
    """'200, 5 new', '304', 'timeout', 'HTTP 503' (an http_error), 'fetching'."""
    if job.status is FetchJobStatus.QUEUED:
        return "queued"
    if job.status is FetchJobStatus.ONGOING:
        return "fetching"
    if job.status is FetchJobStatus.FAILED:
        code = job.error_code.value if job.error_code else "failed"
        return f"HTTP {job.http_status}" if code == "http_error" and job.http_status else code
    status = str(job.http_status) if job.http_status else "ok"
    return f"{status}, {job.posts_count} new" if job.posts_count else status


def _error_line(job: FetchJob, now: datetime) -> str:
    code = job.error_code.value if job.error_code else "failed"
    text = shorten(f"{code}: {redact(job.error_message or '')}", ERROR_WIDTH)
    return f"    last error {ago(attempt_time(job), now)}: {text}"


def totals(everything: Sequence[Assessment]) -> dict[str, int]:
    states = Counter(a.state.value for a in everything)
    return {
        "sources": len(everything),
        **{state: states[state] for state in STATES},
        "fetching": sum(a.fetching for a in everything),
        "posts": sum(a.row.posts_total for a in everything),
    }


def render_human(overview: Overview, shown: Sequence[Assessment], empty: str | None = None) -> str:
    now, everything = overview.now, overview.assessments
    categories = any(a.row.source.category for a in shown)
    header = [
        "ID",
        "NAME",
        *(["CATEGORY"] if categories else []),
        "STATE",
        "LAST ATTEMPT",
        "RESULT",
        "LAST SUCCESS",
        "FAILS",
        "NEXT DUE",
        "EVERY",
        "WHY",
        "POSTS",
        "URL",
    ]
    rows = []
    errors: dict[int, str] = {}
    for index, a in enumerate(shown):
        row = a.row
        # The attempt running now, else the last one that ended (a QUEUED job is the plan).
        latest = row.active if a.fetching else row.finished
        success = row.last_success
        rows.append(
            [
                str(row.source.id),
                shorten(row.source.label or "-", NAME_WIDTH),
                *([shorten(row.source.category or "-", NAME_WIDTH)] if categories else []),
                a.state.label,
                ago(attempt_time(latest), now) if latest else "-",
                result_text(latest) if latest else "-",
                ago(parse_iso(success.ended_at), now) if success and success.ended_at else "-",
                str(row.failures),
                due(a.next_due, now),
                span(a.interval) if a.interval is not None else "-",
                a.reason or "-",
                str(row.posts_total),
                redact(row.source.url),
            ]
        )
        if a.state.needs_attention and row.last_error is not None:
            errors[index] = _error_line(row.last_error, now)
    lines = table(header, rows, right=(0, 7, 11) if categories else (0, 6, 10))
    out = [lines[0]]
    for index, line in enumerate(lines[1:]):
        out.append(line)
        if index in errors:
            out.append(errors[index])
    counts = totals(everything)
    summary = (
        f"{counts['sources']} sources: {counts['ok']} ok, {counts['failing']} failing, "
        f"{counts['gone']} gone, {counts['disabled']} disabled, "
        f"{counts['never_fetched']} never fetched; {counts['fetching']} fetching now; "
        f"{counts['posts']} posts"
    )
    if not shown:
        out = [empty or ("no source needs attention" if everything else "no sources yet")]
    pending = [
        f"not in the database yet (a running daemon adds it within seconds): {redact(url)}"
        for url in overview.not_in_database
    ]
    warning = (
        [
            f"config.toml does not validate ({_errors(len(overview.config_errors))}, on "
            f"stderr); this is the database's view",
            "",
        ]
        if overview.config_errors
        else []
    )
    if "sources" in overview.unread:
        out = ["the feeds could not be read: " + _LOCKED]
        summary = "sources: unknown (not read)"
    twice = [pair.describe() for pair in _same_feeds(overview)]
    unread = [f"not read: {part} ({_LOCKED})" for part in overview.unread if part != "sources"]
    return safe_lines(
        "\n".join(
            [*warning, *out, *_daemon_lines(overview), *unread, "", summary, *twice, *pending]
        )
    )


_LOCKED = "a table is locked: waited longer than the lock wait of status"


def _waits(overview: Overview) -> list[str]:
    """One line per daemon waiting on the database (a table locked for long)."""
    lines = []
    for d in overview.daemons:
        waited = overview.waiting(d)
        if waited is not None:
            lines.append(
                f"daemon {d.id} (pid {d.pid} on {d.hostname}): waiting on the database for "
                f"{round(waited)} s"
            )
    return lines


def _same_feeds(overview: Overview) -> list[SameFeed]:
    return same_feeds([a.row.source for a in overview.assessments])


def _errors(count: int) -> str:
    return f"{count} error{'' if count == 1 else 's'}"


def _daemon_lines(overview: Overview) -> list[str]:
    """The cluster: each daemon's id, host, pid, heartbeat and fetches in flight; drift.
    (On SQLite one daemon owns the file and its config.toml is the truth: whether it runs.)"""
    now = overview.now
    lines: list[str] = []
    if not overview.shared:
        return ["", _sqlite_daemon(overview), *_waits(overview)]
    if overview.daemons:
        header = ["DAEMON", "HOST", "PID", "HEARTBEAT", "IN FLIGHT", "CONFIG"]
        synced = overview.synced.config_hash if overview.synced else None
        rows = [
            [
                d.id,
                d.hostname,
                str(d.pid),
                ago(parse_iso(d.heartbeat_at), now) + (", gone" if overview.gone(d) else ""),
                "?" if d.in_flight is None else str(d.in_flight),
                (d.config_hash or "-") + (" (drift)" if d in overview.drifting() else ""),
            ]
            for d in overview.daemons
        ]
        lines += ["", *table(header, rows, right=(2, 4)), *_waits(overview)]
        if synced is not None:
            lines.append(f"synced config: {synced}")
        for d in overview.drifting():
            keys = overview.daemon_differs_in(d)
            if keys:
                lines.append(f"daemon {d.id} runs a config that differs in: {_keys(keys)}")
    if overview.synced and overview.config_hash != overview.synced.config_hash:
        differs = f" in: {_keys(overview.differs_in)}" if overview.differs_in else ""
        lines.append(
            f"this config.toml ({overview.config_hash}) differs from the one last synced "
            f"({overview.synced.config_hash}, by {overview.synced.synced_by or '-'} at "
            f"{overview.synced.synced_at}){differs}. A daemon applies it when it reads new "
            f"content; a version the cluster has moved on from is drift and is not applied"
        )
    return lines


def _sqlite_daemon(overview: Overview) -> str:
    """Whether the one daemon of a SQLite file runs: its heartbeat is fresh."""
    live = [d for d in overview.daemons if not overview.gone(d)]
    if live:
        d = live[0]
        beat = ago(parse_iso(d.heartbeat_at), overview.now)
        return f"daemon: running (pid {d.pid} on {d.hostname}, heartbeat {beat})"
    last = max((d.heartbeat_at for d in overview.daemons), default=None)
    seen = f" (last heartbeat {ago(parse_iso(last), overview.now)})" if last else ""
    return f"daemon: not running{seen}"


def _keys(keys: Sequence[str]) -> str:
    return ", ".join(redact(key) for key in keys)


def _job(job: FetchJob | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {
        "job_id": job.id,
        "status": job.status.value,
        "queued_at": job.queued_at,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "http_status": job.http_status,
        "error_code": job.error_code.value if job.error_code else None,
        "error_message": redact_optional(job.error_message),
        "posts_new": job.posts_count,
    }


def source_json(a: Assessment) -> dict[str, Any]:
    row = a.row
    return {
        "id": row.source.id,
        "name": row.source.name,
        "feed_title": row.source.feed_title,
        "category": row.source.category,
        "url": redact(row.source.url),
        "feed_url": redact_optional(row.source.feed_url),
        "enabled": row.source.enabled,
        "interval_minutes": row.source.interval_minutes,
        "state": a.state.value,
        "fetching": a.fetching,
        "last_attempt": _job(row.finished),
        "current_attempt": _job(row.active) if a.fetching else None,
        "last_success_at": row.last_success.ended_at if row.last_success else None,
        "consecutive_failures": row.failures,
        "next_due_at": to_iso(a.next_due) if a.next_due else None,
        "interval_seconds": a.interval.total_seconds() if a.interval is not None else None,
        "interval_reason": a.reason,
        "posts_total": row.posts_total,
        "last_error": _job(row.last_error),
    }


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def render_json(overview: Overview, shown: Sequence[Assessment], empty: str | None = None) -> str:
    document = {
        "format": JSON_FORMAT,
        "generated_at": to_iso(overview.now),
        "sources": [source_json(a) for a in shown],
        "totals": totals(overview.assessments),
        "not_in_database": [redact(url) for url in overview.not_in_database],
        "configured_twice": [
            {"page_id": pair.page.id, "feed_id": pair.feed.id} for pair in _same_feeds(overview)
        ],
        "config_errors": list(overview.config_errors),
        "daemon_running": any(not overview.gone(d) for d in overview.daemons),
        "daemons": [
            {
                **asdict(d),
                "drift": d in overview.drifting(),
                "gone": overview.gone(d),
                "differs_in": [redact(key) for key in overview.daemon_differs_in(d)],
                "database_wait_seconds": _rounded(overview.waiting(d)),
            }
            for d in overview.daemons
        ],
        "config": {
            "file_hash": overview.config_hash,
            "differs_in": [redact(key) for key in overview.differs_in],
            "synced": asdict(overview.synced) if overview.synced else None,
        },
        "unread": list(overview.unread),
    }
    return safe_json(json.dumps(document, indent=2, ensure_ascii=False))
