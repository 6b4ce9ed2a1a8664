"""Schema versions. schema.sql is always the newest schema; these steps bring older files up.

``MIGRATIONS[n]`` takes a database from ``user_version`` n to n + 1. A step only adds what
the version added; schema.sql (all ``IF NOT EXISTS``) runs after the steps either way.
"""

from __future__ import annotations

SCHEMA_VERSION = 4

MIGRATIONS: dict[int, str] = {
    # 1 -> 2: deleting old fetch_job rows set posts.fetch_job_id to NULL by scanning every
    # post; the index makes pruning proportional to the jobs pruned. Posts are listed newest
    # first by rssd posts.
    1: """
        CREATE INDEX IF NOT EXISTS posts_fetch_job ON posts (fetch_job_id);
        CREATE INDEX IF NOT EXISTS posts_published ON posts (published_at);
    """,
    # 2 -> 3: item fingerprints of each source's last parsed document (rssd/fetch/items.py).
    2: """
        CREATE TABLE IF NOT EXISTS seen_items (
            content_source_id INTEGER PRIMARY KEY
                              REFERENCES content_sources (id) ON DELETE CASCADE,
            digests           BLOB    NOT NULL
        ) STRICT;
    """,
    # 3 -> 4: the feed's own title, the feed URL discovered from a homepage, the category.
    3: """
        ALTER TABLE content_sources ADD COLUMN feed_title TEXT;
        ALTER TABLE content_sources ADD COLUMN feed_url TEXT;
        ALTER TABLE content_sources ADD COLUMN category TEXT;
    """,
}
