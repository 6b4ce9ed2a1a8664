"""Schema versions. schema.sql (SQLite) and schema_pg.sql (PostgreSQL) are always the newest
schema; these steps bring older databases up.

``MIGRATIONS[n]`` takes a SQLite database from ``user_version`` n to n + 1;
``PG_MIGRATIONS[n]`` a PostgreSQL one (``schema_version`` table) likewise. A step only adds
what the version added; the schema file (all ``IF NOT EXISTS``) runs after the steps.
PostgreSQL support began at version 7, so its steps start there.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rssd.repo.db import DatabaseError
from rssd.repo.dialect import Dialect

SCHEMA_VERSION = 20

#: Version 18's index of due jobs, in the claims' order (the same on both backends).
_DUE_BY_TIME_AND_ID = """
        DROP INDEX IF EXISTS fetch_job_due;
        CREATE INDEX fetch_job_due ON fetch_job (not_before, id) WHERE status = 'QUEUED';
"""

#: Version 19's index of the pages (sources with a discovered feed_url), the same on both
#: backends: a changed feed's search for pages leading to it scanned every source.
_PAGES_INDEX = """
        CREATE INDEX IF NOT EXISTS content_sources_pages ON content_sources (id)
            WHERE feed_url IS NOT NULL;
"""

#: Version 13's full-text index on SQLite, as in schema.sql (see there why the queue).
_SQLITE_SEARCH = """
        CREATE VIRTUAL TABLE IF NOT EXISTS posts_fts USING fts5 (
            title, body, author, content = '', tokenize = 'unicode61 remove_diacritics 2'
        );
        CREATE TABLE IF NOT EXISTS search_queue (
            seq     INTEGER PRIMARY KEY,
            post_id INTEGER NOT NULL,
            unindex INTEGER NOT NULL CHECK (unindex IN (0, 1)),
            title   TEXT,
            summary TEXT,
            content TEXT,
            author  TEXT
        ) STRICT;
        CREATE TRIGGER IF NOT EXISTS posts_search_insert AFTER INSERT ON posts BEGIN
            INSERT INTO search_queue (post_id, unindex) VALUES (new.id, 0);
        END;
        CREATE TRIGGER IF NOT EXISTS posts_search_update
        AFTER UPDATE OF title, summary, content, author ON posts BEGIN
            INSERT INTO search_queue (post_id, unindex, title, summary, content, author)
            VALUES (old.id, 1, old.title, old.summary, old.content, old.author);
        END;
        CREATE TRIGGER IF NOT EXISTS posts_search_delete AFTER DELETE ON posts BEGIN
            INSERT INTO search_queue (post_id, unindex, title, summary, content, author)
            VALUES (old.id, 1, old.title, old.summary, old.content, old.author);
        END;
        CREATE TABLE IF NOT EXISTS search_backfill (
            id      INTEGER PRIMARY KEY CHECK (id = 1),
            next_id INTEGER NOT NULL,
            last_id INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX IF NOT EXISTS deliveries_source ON deliveries (content_source_id, created_at);
"""

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
    # 6 -> 7: the schedule and the claims live in fetch_job (the next QUEUED job with its
    # not-before time; leases and host slots of ONGOING ones); the daemons table and the
    # last synced config. Sources get their QUEUED job at the next start (reconcile).
    6: """
        ALTER TABLE fetch_job ADD COLUMN not_before TEXT;
        ALTER TABLE fetch_job ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE fetch_job ADD COLUMN fetch_url TEXT;
        ALTER TABLE fetch_job ADD COLUMN moved_seen INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE fetch_job ADD COLUMN claimed_by TEXT;
        ALTER TABLE fetch_job ADD COLUMN lease_expires_at TEXT;
        ALTER TABLE fetch_job ADD COLUMN host TEXT;
        ALTER TABLE fetch_job ADD COLUMN host_slot INTEGER;
        UPDATE fetch_job SET not_before = queued_at WHERE status = 'QUEUED';

        CREATE INDEX IF NOT EXISTS fetch_job_due ON fetch_job (not_before)
            WHERE status = 'QUEUED';
        CREATE INDEX IF NOT EXISTS fetch_job_lease ON fetch_job (lease_expires_at)
            WHERE status = 'ONGOING';
        CREATE UNIQUE INDEX IF NOT EXISTS fetch_job_host_slot ON fetch_job (host, host_slot)
            WHERE status = 'ONGOING' AND host_slot IS NOT NULL;

        CREATE TABLE IF NOT EXISTS daemons (
            id           TEXT    PRIMARY KEY,
            hostname     TEXT    NOT NULL,
            pid          INTEGER NOT NULL,
            started_at   TEXT    NOT NULL,
            heartbeat_at TEXT    NOT NULL,
            in_flight    INTEGER NOT NULL DEFAULT 0,
            config_hash  TEXT
        ) STRICT;

        CREATE TABLE IF NOT EXISTS config_sync (
            id           INTEGER PRIMARY KEY CHECK (id = 1),
            config_hash  TEXT    NOT NULL,
            config_mtime TEXT    NOT NULL,
            synced_at    TEXT    NOT NULL,
            synced_by    TEXT
        ) STRICT;
    """,
    # 7 -> 8: every synced config version, so that drift is judged by content, not mtime.
    7: """
        CREATE TABLE IF NOT EXISTS config_versions (
            config_hash     TEXT PRIMARY KEY,
            digests         TEXT NOT NULL,
            first_synced_at TEXT NOT NULL
        ) STRICT;
    """,
    # 8 -> 9: per-user format, include_content and dedupe_days; posts' tags and
    # enclosures; the stories announced to each user and the posts skipped as duplicates
    # (the tables come from schema.sql).
    8: """
        ALTER TABLE users ADD COLUMN format TEXT NOT NULL DEFAULT 'standard';
        ALTER TABLE users ADD COLUMN include_content INTEGER NOT NULL DEFAULT 0
            CHECK (include_content IN (0, 1));
        ALTER TABLE users ADD COLUMN dedupe_days INTEGER NOT NULL DEFAULT 7;
        ALTER TABLE posts ADD COLUMN tags TEXT;
        ALTER TABLE posts ADD COLUMN enclosures TEXT;
    """,
    # 9 -> 10: PostgreSQL wakes idle daemons with NOTIFY when a job falls due (see
    # PG_MIGRATIONS[9]); SQLite has one daemon per file, nobody to wake: nothing to do.
    9: "",
    # 10 -> 11: adaptive polling (a feed's own interval is fixed, the others move between
    # their min and max), the planned interval and its reason on the QUEUED job, and the
    # hosts table of per-host politeness. Existing sources are re-synced at start.
    10: """
        ALTER TABLE content_sources ADD COLUMN interval_fixed INTEGER NOT NULL DEFAULT 0
            CHECK (interval_fixed IN (0, 1));
        ALTER TABLE content_sources ADD COLUMN min_interval_minutes REAL NOT NULL DEFAULT 15
            CHECK (min_interval_minutes > 0);
        ALTER TABLE content_sources ADD COLUMN max_interval_minutes REAL NOT NULL
            DEFAULT 1440 CHECK (max_interval_minutes > 0);
        ALTER TABLE fetch_job ADD COLUMN interval_seconds REAL;
        ALTER TABLE fetch_job ADD COLUMN interval_reason TEXT;
        CREATE TABLE IF NOT EXISTS hosts (
            host          TEXT PRIMARY KEY,
            next_start_at TEXT NOT NULL,
            paused_until  TEXT
        ) STRICT;
    """,
    # 11 -> 12: the users' digest and timezone; digest_items comes from schema.sql.
    11: """
        ALTER TABLE users ADD COLUMN digest TEXT;
        ALTER TABLE users ADD COLUMN timezone TEXT;
    """,
    # 12 -> 13: full-text search (schema.sql, version 13), and deliveries by feed and time
    # (`rssd deliveries --post`). The index starts empty; the posts already stored (ids
    # up to last_id) are indexed by the daemon in the background, a batch per
    # transaction (rssd/daemon/search_backfill.py), so this step is instant.
    12: f"""
        {_SQLITE_SEARCH}
        INSERT INTO search_backfill (id, next_id, last_id)
        VALUES (1, 1, (SELECT coalesce(max(id), 0) FROM posts)) ON CONFLICT (id) DO NOTHING;
    """,
    # 13 -> 14: a redelivered message keeps the count of its earlier attempts.
    13: """
        ALTER TABLE deliveries ADD COLUMN earlier_attempts INTEGER NOT NULL DEFAULT 0;
    """,
    # 14 -> 15: who sends a user's messages now (a lease, like a fetch job's) and an
    # endpoint's pause (a 429's Retry-After), rssd/daemon/delivery.py.
    14: """
        ALTER TABLE users ADD COLUMN sender TEXT;
        ALTER TABLE users ADD COLUMN sender_until TEXT;
        ALTER TABLE users ADD COLUMN paused_until TEXT;
    """,
    # 15 -> 16: rssd indexes its own inserts itself; the insert trigger queues the others
    # (schema.sql, search_direct).
    15: """
        CREATE TABLE IF NOT EXISTS search_direct (
            id INTEGER PRIMARY KEY CHECK (id = 1)
        ) STRICT;
        DROP TRIGGER IF EXISTS posts_search_insert;
        CREATE TRIGGER posts_search_insert AFTER INSERT ON posts
        WHEN NOT EXISTS (SELECT 1 FROM search_direct) BEGIN
            INSERT INTO search_queue (post_id, unindex) VALUES (new.id, 0);
        END;
    """,
    # 16 -> 17: since when a daemon has been waiting on the database (a table locked for
    # long), written with its heartbeat, so that `rssd status` can say so.
    16: """
        ALTER TABLE daemons ADD COLUMN database_wait_since TEXT;
    """,
    # 17 -> 18: ``fetch_job_due`` ends with the id, the tie-break of the claims' order
    # (not_before, id): a page of due jobs is read off the index, not sorted from every
    # due job (PostgreSQL hashed and sorted 20,000 for each claim of 50).
    17: _DUE_BY_TIME_AND_ID,
    # 18 -> 19: an index of the pages, for the outbox's search of those leading to a feed.
    18: _PAGES_INDEX,
    # 19 -> 20: which rssd version's check accepted the config.toml synced (a start skips
    # the check only for a file its own version checked: rssd/daemon/run.py).
    19: """
        ALTER TABLE config_sync ADD COLUMN checked_by TEXT;
    """,
}

#: Waking idle daemons (rssd/repo/pg_listen.py): a job queued or requeued due now (a new
#: source, a job taken back, a fetch interrupted) notifies channel ``rssd_jobs``; identical
#: notifications of one transaction arrive once. Also in schema_pg.sql.
PG_JOB_DUE_TRIGGER = """
CREATE OR REPLACE FUNCTION rssd_job_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rssd_jobs', '');
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER fetch_job_due_notify
    AFTER INSERT OR UPDATE OF status ON fetch_job
    FOR EACH ROW
    WHEN (NEW.status = 'QUEUED' AND (NEW.not_before IS NULL OR NEW.not_before <= now()))
    EXECUTE FUNCTION rssd_job_due();
"""

PG_MIGRATIONS: dict[int, str] = {
    7: """
        CREATE TABLE IF NOT EXISTS config_versions (
            config_hash     text PRIMARY KEY,
            digests         text NOT NULL,
            first_synced_at timestamptz NOT NULL
        );
    """,
    # 8 -> 9: as MIGRATIONS[8].
    8: """
        ALTER TABLE users ADD COLUMN IF NOT EXISTS format text NOT NULL DEFAULT 'standard';
        ALTER TABLE users ADD COLUMN IF NOT EXISTS include_content integer NOT NULL DEFAULT 0
            CHECK (include_content IN (0, 1));
        ALTER TABLE users ADD COLUMN IF NOT EXISTS dedupe_days integer NOT NULL DEFAULT 7;
        ALTER TABLE posts ADD COLUMN IF NOT EXISTS tags text;
        ALTER TABLE posts ADD COLUMN IF NOT EXISTS enclosures text;
    """,
    9: PG_JOB_DUE_TRIGGER,
    # 10 -> 11: as MIGRATIONS[10].
    10: """
        ALTER TABLE content_sources ADD COLUMN IF NOT EXISTS interval_fixed integer NOT NULL
            DEFAULT 0 CHECK (interval_fixed IN (0, 1));
        ALTER TABLE content_sources ADD COLUMN IF NOT EXISTS min_interval_minutes
            double precision NOT NULL DEFAULT 15 CHECK (min_interval_minutes > 0);
        ALTER TABLE content_sources ADD COLUMN IF NOT EXISTS max_interval_minutes
            double precision NOT NULL DEFAULT 1440 CHECK (max_interval_minutes > 0);
        ALTER TABLE fetch_job ADD COLUMN IF NOT EXISTS interval_seconds double precision;
        ALTER TABLE fetch_job ADD COLUMN IF NOT EXISTS interval_reason text;
        CREATE TABLE IF NOT EXISTS hosts (
            host          text PRIMARY KEY,
            next_start_at timestamptz NOT NULL,
            paused_until  timestamptz
        );
    """,
    # 11 -> 12: as MIGRATIONS[11].
    11: """
        ALTER TABLE users ADD COLUMN IF NOT EXISTS digest text;
        ALTER TABLE users ADD COLUMN IF NOT EXISTS timezone text;
    """,
    # 12 -> 13: posts.search and its GIN index, filled in the background as on SQLite (the
    # column is added without a value: no table rewrite); deliveries by feed and time.
    12: """
        ALTER TABLE posts ADD COLUMN IF NOT EXISTS search tsvector;
        CREATE INDEX IF NOT EXISTS posts_search ON posts USING gin (search);
        CREATE TABLE IF NOT EXISTS search_backfill (
            id      integer PRIMARY KEY CHECK (id = 1),
            next_id bigint  NOT NULL,
            last_id bigint  NOT NULL
        );
        INSERT INTO search_backfill (id, next_id, last_id)
        VALUES (1, 1, (SELECT coalesce(max(id), 0) FROM posts)) ON CONFLICT (id) DO NOTHING;
        CREATE INDEX IF NOT EXISTS deliveries_source ON deliveries (content_source_id, created_at);
    """,
    # 13 -> 14: as MIGRATIONS[13].
    13: """
        ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS earlier_attempts integer NOT NULL
            DEFAULT 0;
    """,
    # 14 -> 15: as MIGRATIONS[14].
    14: """
        ALTER TABLE users ADD COLUMN IF NOT EXISTS sender text;
        ALTER TABLE users ADD COLUMN IF NOT EXISTS sender_until timestamptz;
        ALTER TABLE users ADD COLUMN IF NOT EXISTS paused_until timestamptz;
    """,
    # 15 -> 16: SQLite's search triggers only; nothing on PostgreSQL.
    15: "",
    # 16 -> 17: as MIGRATIONS[16].
    16: """
        ALTER TABLE daemons ADD COLUMN IF NOT EXISTS database_wait_since timestamptz;
    """,
    # 17 -> 18: as MIGRATIONS[17].
    17: _DUE_BY_TIME_AND_ID,
    # 18 -> 19: as MIGRATIONS[18].
    18: _PAGES_INDEX,
    # 19 -> 20: as MIGRATIONS[19].
    19: """
        ALTER TABLE config_sync ADD COLUMN IF NOT EXISTS checked_by text;
    """,
}


def schema_sql(name: str = "schema.sql") -> str:
    """A schema file from the installed package, else from the source checkout beside it."""
    packaged = resources.files("rssd").joinpath(name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / name).read_text(encoding="utf-8")


#: Each backend's steps and schema file, by dialect name.
_BACKENDS = {"sqlite": (MIGRATIONS, "schema.sql"), "postgresql": (PG_MIGRATIONS, "schema_pg.sql")}


def upgrade_scripts(dialect: Dialect, version: int, database: str) -> list[str]:
    """What brings ``database`` (a name for the error) from ``version`` to SCHEMA_VERSION,
    in order: the steps since its version (none for a new database, version 0), then the
    schema file. The caller runs them in one transaction and records SCHEMA_VERSION. A
    database newer than this rssd is refused: its schema may mean what this code does not
    know."""
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"database {database} has schema version {version}, newer than this "
            f"rssd understands ({SCHEMA_VERSION}); upgrade rssd"
        )
    steps, schema_file = _BACKENDS[dialect.name]
    scripts = [steps[step] for step in range(version, SCHEMA_VERSION)] if version > 0 else []
    return [*scripts, schema_sql(schema_file)]
