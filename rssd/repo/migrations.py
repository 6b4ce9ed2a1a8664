"""Schema versions. schema.sql is always the newest schema; these steps bring older files up.

``MIGRATIONS[n]`` takes a database from ``user_version`` n to n + 1. A step only adds what
the version added; schema.sql (all ``IF NOT EXISTS``) runs after the steps either way.
"""

from __future__ import annotations

SCHEMA_VERSION = 6

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
    # 4 -> 5: users, subscriptions and the webhook outbox (see schema.sql, version 5).
    4: """
        CREATE TABLE IF NOT EXISTS users (
            id              INTEGER PRIMARY KEY,
            name            TEXT    NOT NULL UNIQUE,
            webhook_url     TEXT    NOT NULL,
            enabled         INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
            keep            TEXT    NOT NULL DEFAULT '[]',  -- JSON arrays of 'field=regex'
            block           TEXT    NOT NULL DEFAULT '[]',
            config_digest   TEXT    NOT NULL,
            disabled_reason TEXT    CHECK (disabled_reason IN ('gone', 'failing')),
            disabled_at     TEXT,
            failing_since   TEXT,
            last_success_at TEXT,
            last_error_at   TEXT,
            last_error      TEXT,
            created_at      TEXT    NOT NULL,
            updated_at      TEXT    NOT NULL
        ) STRICT;

        CREATE TABLE IF NOT EXISTS subscriptions (
            user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            content_source_id INTEGER NOT NULL REFERENCES content_sources (id) ON DELETE CASCADE,
            primed            INTEGER NOT NULL DEFAULT 1 CHECK (primed IN (0, 1)),
            created_at        TEXT    NOT NULL,
            PRIMARY KEY (user_id, content_source_id)
        ) STRICT;

        CREATE INDEX IF NOT EXISTS subscriptions_source ON subscriptions (content_source_id);

        CREATE TABLE IF NOT EXISTS deliveries (
            id                TEXT    PRIMARY KEY,
            user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            content_source_id INTEGER NOT NULL REFERENCES content_sources (id) ON DELETE CASCADE,
            fetch_job_id      INTEGER REFERENCES fetch_job (id) ON DELETE SET NULL,
            posts_count       INTEGER NOT NULL CHECK (posts_count > 0),
            body              TEXT    NOT NULL,
            status            TEXT    NOT NULL DEFAULT 'pending'
                              CHECK (status IN ('pending', 'delivered', 'dead')),
            attempts          INTEGER NOT NULL DEFAULT 0,
            next_attempt_at   TEXT    NOT NULL,
            last_attempt_at   TEXT,
            last_http_status  INTEGER,
            last_error        TEXT,
            created_at        TEXT    NOT NULL,
            updated_at        TEXT    NOT NULL
        ) STRICT;

        CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (user_id, id)
            WHERE status = 'pending';
        CREATE INDEX IF NOT EXISTS deliveries_user ON deliveries (user_id, created_at);
        CREATE INDEX IF NOT EXISTS deliveries_fetch_job ON deliveries (fetch_job_id);
    """,
    # 5 -> 6: `rssd posts` reads the newest posts off an index (by the same expression it
    # sorts by) instead of sorting all of them; --stored-since and pruning by age use
    # created_at. posts_published served only the old sort: dropped (one index fewer to
    # write per post).
    5: """
        CREATE INDEX IF NOT EXISTS posts_newest
            ON posts (coalesce(published_at, created_at), id);
        CREATE INDEX IF NOT EXISTS posts_source_newest
            ON posts (content_source_id, coalesce(published_at, created_at), id);
        CREATE INDEX IF NOT EXISTS posts_created ON posts (created_at);
        DROP INDEX IF EXISTS posts_published;
    """,
}
