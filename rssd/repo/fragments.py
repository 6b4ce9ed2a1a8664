"""SQL pieces that several statements share, written once: what a source's run of
failures is, and ``LIMIT`` without a limit. (Where the two backends disagree, the piece is
in rssd/repo/dialect.py instead.)"""

from __future__ import annotations

#: ``LIMIT`` takes no "unlimited" both backends accept (-1 is SQLite's, NULL PostgreSQL's).
NO_LIMIT = 2**62


def failure_run(source_id: str, last_success_id: str) -> str:
    """Consecutive real failures of source ``source_id`` (an SQL expression) since its job
    ``last_success_id`` (an expression, NULL when it never succeeded). ``interrupted`` is
    the daemon's doing, not the feed's: it neither counts nor breaks the run. This is the
    backoff's memory and what ``rssd status`` and the gauges call failing."""
    return (
        f"(SELECT count(*) FROM fetch_job f WHERE f.content_source_id = {source_id} "
        f"AND f.id > coalesce({last_success_id}, 0) "
        f"AND f.status = 'FAILED' AND f.error_code != 'interrupted')"
    )
