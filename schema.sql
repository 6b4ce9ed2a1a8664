-- rssd schema, applied idempotently whenever the version is behind (rssd/repo/sqlite.py).
-- The version lives in PRAGMA user_version; older databases are brought up to date by the
-- migrations in rssd/repo/migrations.py before this file runs. Keep both in step.
-- Timestamps are ISO 8601 UTC text ("2026-11-29T01:54:58.123Z"), which sorts as time does.

-- Version 11 added interval_fixed, min_interval_minutes, max_interval_minutes, adaptive
-- polling (rssd/daemon/schedule.py): interval_minutes set on the feed itself is fixed (1);
-- otherwise it is the start, and the posting rate moves the interval between the feed's
-- min and max (each the feed's own or the global one).
CREATE TABLE IF NOT EXISTS content_sources (
    id               INTEGER PRIMARY KEY,
    url              TEXT    NOT NULL UNIQUE,
    name             TEXT,
    interval_minutes INTEGER NOT NULL CHECK (interval_minutes > 0),
    timeout_seconds  REAL    NOT NULL CHECK (timeout_seconds > 0),
    enabled          INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    -- Version 4: what the feed says and where it was found (not from config.toml): its
    -- own <title>, the feed URL a homepage's <link rel="alternate"> led to (NULL: the
    -- configured URL is the feed), and the config's category ("Blogs / Linux").
    feed_title       TEXT,
    feed_url         TEXT,
    category         TEXT,
    interval_fixed       INTEGER NOT NULL DEFAULT 0 CHECK (interval_fixed IN (0, 1)),
    min_interval_minutes REAL    NOT NULL DEFAULT 15 CHECK (min_interval_minutes > 0),
    max_interval_minutes REAL    NOT NULL DEFAULT 1440 CHECK (max_interval_minutes > 0)
) STRICT;

-- Version 19: the pages, sources whose feed was discovered (feed_url set). A changed feed
-- looks for pages that lead to it (rssd/repo/outbox.py, _PAGES): a scan of these, not of
-- every source (94 us a changed feed at 2,000 sources, growing with them; 3 us).
CREATE INDEX IF NOT EXISTS content_sources_pages ON content_sources (id)
    WHERE feed_url IS NOT NULL;

CREATE TABLE IF NOT EXISTS fetch_job (
    id                INTEGER PRIMARY KEY,
    content_source_id INTEGER NOT NULL REFERENCES content_sources (id) ON DELETE CASCADE,
    status            TEXT    NOT NULL
                      CHECK (status IN ('QUEUED', 'ONGOING', 'COMPLETED', 'FAILED')),
    queued_at         TEXT    NOT NULL,
    started_at        TEXT,
    ended_at          TEXT,
    error_code        TEXT CHECK (error_code IN (
                          'timeout', 'dns', 'connection', 'tls', 'http_error', 'rate_limited',
                          'gone', 'too_large', 'too_many_redirects', 'not_a_feed',
                          'parse_error', 'interrupted', 'internal')),
    error_message     TEXT,
    posts_count       INTEGER NOT NULL DEFAULT 0,
    http_status       INTEGER,
    etag              TEXT,
    last_modified     TEXT,
    content_hash      TEXT,
    bytes             INTEGER,
    final_url         TEXT,
    -- Version 7, the schedule and the claims (rssd/repo/claims.py). A QUEUED job is the
    -- source's next fetch, due at not_before; it carries what the scheduler learned (the
    -- run of failures, a permanent redirect) so a restart, or another daemon, goes on
    -- from there. An ONGOING job names the daemon holding it and until when (its lease),
    -- and the host slot it takes (host, host_slot).
    not_before        TEXT,
    failures          INTEGER NOT NULL DEFAULT 0,
    fetch_url         TEXT,
    moved_seen        INTEGER NOT NULL DEFAULT 0,
    claimed_by        TEXT,
    lease_expires_at  TEXT,
    host              TEXT,
    host_slot         INTEGER,
    -- Version 11: a QUEUED job's interval as planned, and why (rssd status shows both).
    interval_seconds  REAL,
    interval_reason   TEXT,
    -- A FAILED job always says why; a COMPLETED one never carries an error.
    CHECK ((status = 'FAILED') = (error_code IS NOT NULL))
) STRICT;

-- The guard against duplicate concurrent fetches, across processes too: at most one
-- QUEUED or ONGOING job per source.
CREATE UNIQUE INDEX IF NOT EXISTS fetch_job_one_active
    ON fetch_job (content_source_id) WHERE status IN ('QUEUED', 'ONGOING');

-- A source's latest job (the single source of truth for its state) without a scan.
CREATE INDEX IF NOT EXISTS fetch_job_source_latest ON fetch_job (content_source_id, id);

CREATE TABLE IF NOT EXISTS posts (
    id                INTEGER PRIMARY KEY,
    content_source_id INTEGER NOT NULL REFERENCES content_sources (id) ON DELETE CASCADE,
    -- The job that last wrote the post; pruning old jobs keeps the post.
    fetch_job_id      INTEGER REFERENCES fetch_job (id) ON DELETE SET NULL,
    external_id       TEXT    NOT NULL,
    title             TEXT,
    url               TEXT,
    author            TEXT,
    summary           TEXT,
    content           TEXT,
    published_at      TEXT,
    updated_at        TEXT,
    -- Version 9: JSON arrays of the entry's categories/tags and its enclosures
    -- ({"url", "type", "length"}); NULL when the entry had none.
    tags              TEXT,
    enclosures        TEXT,
    created_at        TEXT    NOT NULL,
    content_hash      TEXT    NOT NULL,
    UNIQUE (content_source_id, external_id)
) STRICT;

-- Version 2: pruning fetch_job must not scan posts for the ON DELETE SET NULL. (Version 2
-- also added posts_published; version 6 replaced it with posts_newest.)
CREATE INDEX IF NOT EXISTS posts_fetch_job ON posts (fetch_job_id);

-- Version 3: the fingerprints (8 bytes each, rssd/fetch/items.py) of the items in the last
-- document parsed for a source, so that a changed feed has only its new items parsed. A
-- cache: losing a row costs one full parse, never a post.
CREATE TABLE IF NOT EXISTS seen_items (
    content_source_id INTEGER PRIMARY KEY
                      REFERENCES content_sources (id) ON DELETE CASCADE,
    digests           BLOB    NOT NULL
) STRICT;
-- Version 9 added users.format, include_content and dedupe_days, version 12 digest and
-- timezone (config.toml's keys).
-- Version 5: users and their webhooks (rssd/webhooks/, rssd/daemon/delivery.py).
-- One row per [[users]] table, synced from config.toml like content_sources: a user
-- removed from the file is disabled (enabled = 0) with its history kept. The secret is
-- never stored. The endpoint's health is kept here: disabled_reason is set when the
-- endpoint answered 410 ('gone') or failed for days ('failing'), and cleared when the
-- user's config entry changes (config_digest) or by `rssd users --enable`.
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
    updated_at      TEXT    NOT NULL,
    format          TEXT    NOT NULL DEFAULT 'standard',
    include_content INTEGER NOT NULL DEFAULT 0 CHECK (include_content IN (0, 1)),
    dedupe_days     INTEGER NOT NULL DEFAULT 7,
    digest          TEXT,
    timezone        TEXT,
    sender          TEXT,  -- the daemon sending the user's messages now (version 15)
    sender_until    TEXT,  -- its lease's end
    paused_until    TEXT   -- the endpoint asked for a pause (a 429's Retry-After)
) STRICT;

-- primed = 0: the subscription's first completed fetch is not announced (notify_backlog
-- = false and the feed had never been fetched when the user subscribed).
CREATE TABLE IF NOT EXISTS subscriptions (
    user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content_source_id INTEGER NOT NULL REFERENCES content_sources (id) ON DELETE CASCADE,
    primed            INTEGER NOT NULL DEFAULT 1 CHECK (primed IN (0, 1)),
    created_at        TEXT    NOT NULL,
    PRIMARY KEY (user_id, content_source_id)
) STRICT;

CREATE INDEX IF NOT EXISTS subscriptions_source ON subscriptions (content_source_id);

-- The outbox: one webhook message, written in the transaction that stored the posts it
-- announces. id is the webhook-id (time-ordered, so ORDER BY id is oldest first); body is
-- the exact JSON sent, the same bytes on every attempt.
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
    updated_at        TEXT    NOT NULL,
    earlier_attempts  INTEGER NOT NULL DEFAULT 0
) STRICT;
-- (earlier_attempts, version 14: attempts made before the last `rssd redeliver`.)

-- A user's pending messages, oldest first: what the delivery loop reads.
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (user_id, id)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_user ON deliveries (user_id, created_at);
CREATE INDEX IF NOT EXISTS deliveries_fetch_job ON deliveries (fetch_job_id);
-- Version 13: the messages of a feed by time, for `rssd deliveries --post ID`.
CREATE INDEX IF NOT EXISTS deliveries_source ON deliveries (content_source_id, created_at);

-- Version 6: `rssd posts` lists the newest posts (by publication time, else storing time)
-- off these indexes, all posts or one feed's, without sorting every post; --stored-since
-- and pruning by age use posts_created.
CREATE INDEX IF NOT EXISTS posts_newest ON posts (coalesce(published_at, created_at), id);
CREATE INDEX IF NOT EXISTS posts_source_newest
    ON posts (content_source_id, coalesce(published_at, created_at), id);
CREATE INDEX IF NOT EXISTS posts_created ON posts (created_at);

-- Version 7: due jobs in order (the claims' order, not_before then id, since version 18:
-- a page of due jobs is read off the index, not sorted), expired leases, and the
-- cluster-wide per-host limit: each ONGOING job holds one of its host's max_per_host
-- slots, and two cannot hold the same one.
CREATE INDEX IF NOT EXISTS fetch_job_due ON fetch_job (not_before, id) WHERE status = 'QUEUED';
CREATE INDEX IF NOT EXISTS fetch_job_lease ON fetch_job (lease_expires_at)
    WHERE status = 'ONGOING';
CREATE UNIQUE INDEX IF NOT EXISTS fetch_job_host_slot ON fetch_job (host, host_slot)
    WHERE status = 'ONGOING' AND host_slot IS NOT NULL;

-- Version 7: the daemons working on this database, each with its heartbeat (rssd status).
-- Version 17: database_wait_since, since when its scheduler has been waiting on the
-- database (a table locked for long), NULL when it is not; written with the heartbeat.
CREATE TABLE IF NOT EXISTS daemons (
    id           TEXT    PRIMARY KEY,
    hostname     TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TEXT    NOT NULL,
    heartbeat_at TEXT    NOT NULL,
    in_flight    INTEGER NOT NULL DEFAULT 0,
    config_hash  TEXT,
    database_wait_since TEXT
) STRICT;

-- Version 7: the config.toml last synced into content_sources, so that a daemon with an
-- older copy of the file does not undo a newer sync (config.drift).
-- Version 20: checked_by, the rssd version whose check accepted the file synced; a daemon
-- starts without checking its config.toml again only when the file has config_mtime and
-- this is its own version (rssd/daemon/run.py).
CREATE TABLE IF NOT EXISTS config_sync (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    config_hash  TEXT    NOT NULL,
    config_mtime TEXT    NOT NULL,
    synced_at    TEXT    NOT NULL,
    synced_by    TEXT,
    checked_by   TEXT
) STRICT;

-- Version 8: every config version the cluster synced, by hash, with a digest per shared
-- key: a file holding a superseded version is drift, whatever its mtime; status names the
-- keys that differ (rssd/repo/config_sync.py).
CREATE TABLE IF NOT EXISTS config_versions (
    config_hash     TEXT PRIMARY KEY,
    digests         TEXT NOT NULL,  -- JSON object: key -> digest
    first_synced_at TEXT NOT NULL
) STRICT;

-- Version 9: one notification per story. announced: the stories (a post's normalized link,
-- 'link:...', and its guid, 'guid:...') announced to each user, the newest per story;
-- a post of another of the user's feeds with one of these keys within the user's
-- dedupe_days is not announced again but listed in skipped_posts (rssd deliveries --skipped).
CREATE TABLE IF NOT EXISTS announced (
    user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    story             TEXT    NOT NULL,
    content_source_id INTEGER NOT NULL REFERENCES content_sources (id) ON DELETE CASCADE,
    post_id           INTEGER NOT NULL,
    announced_at      TEXT    NOT NULL,
    PRIMARY KEY (user_id, story)
) STRICT;
CREATE TABLE IF NOT EXISTS skipped_posts (
    user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    post_id           INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    content_source_id INTEGER NOT NULL REFERENCES content_sources (id) ON DELETE CASCADE,
    duplicate_of      INTEGER NOT NULL,
    story             TEXT    NOT NULL,
    skipped_at        TEXT    NOT NULL,
    PRIMARY KEY (user_id, post_id)
) STRICT;
CREATE INDEX IF NOT EXISTS skipped_posts_time ON skipped_posts (skipped_at);

-- Version 11: per-host politeness across daemons (rssd/repo/hosts.py). A request to a host
-- may start at next_start_at at the earliest (host_min_gap_seconds after the previous
-- start, or when a 429/503's Retry-After ends: paused_until).
CREATE TABLE IF NOT EXISTS hosts (
    host          TEXT PRIMARY KEY,
    next_start_at TEXT NOT NULL,
    paused_until  TEXT
) STRICT;

-- Version 12: digests. A post announced to a user with a digest waits here (instead of
-- becoming a message) until the user's period closes; then one transaction deletes the
-- period's rows and writes the digest's messages (rssd/daemon/digests.py).
CREATE TABLE IF NOT EXISTS digest_items (
    user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    post_id           INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    content_source_id INTEGER NOT NULL REFERENCES content_sources (id) ON DELETE CASCADE,
    queued_at         TEXT    NOT NULL,
    PRIMARY KEY (user_id, post_id)
) STRICT;

-- Version 13: full-text search (`rssd posts --search`, rssd/repo/search.py). posts_fts
-- indexes each post's title, text (summary and content without HTML) and author, without
-- keeping a copy of them (content=''): removing a post from it takes the text it indexed,
-- so every change of a post is queued here by the triggers below, old values included,
-- and applied to the index in the transaction that made it (rssd/repo/search.py: sync_in).
CREATE VIRTUAL TABLE IF NOT EXISTS posts_fts USING fts5 (
    title, body, author, content = '', tokenize = 'unicode61 remove_diacritics 2'
);

-- unindex = 1: remove these old values of the post from the index; 0: index the post.
CREATE TABLE IF NOT EXISTS search_queue (
    seq     INTEGER PRIMARY KEY,
    post_id INTEGER NOT NULL,
    unindex INTEGER NOT NULL CHECK (unindex IN (0, 1)),
    title   TEXT,
    summary TEXT,
    content TEXT,
    author  TEXT
) STRICT;

-- Version 16: rssd indexes the posts it inserts itself (rssd/repo/search.py: indexed_directly),
-- with the text its parse workers computed; while it does, in its own transaction, the
-- row of search_direct tells the insert trigger not to queue them. Any other insert is
-- queued as before. The row never outlives that transaction.
CREATE TABLE IF NOT EXISTS search_direct (
    id INTEGER PRIMARY KEY CHECK (id = 1)
) STRICT;

CREATE TRIGGER IF NOT EXISTS posts_search_insert AFTER INSERT ON posts
WHEN NOT EXISTS (SELECT 1 FROM search_direct) BEGIN
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

-- Version 13: building the index for the posts stored before it, in batches: posts with
-- next_id <= id <= last_id are still to be indexed (last_id: the newest post then).
CREATE TABLE IF NOT EXISTS search_backfill (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    next_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL
) STRICT;
INSERT INTO search_backfill (id, next_id, last_id) VALUES (1, 1, 0) ON CONFLICT (id) DO NOTHING;
