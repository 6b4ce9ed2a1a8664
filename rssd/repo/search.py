"""The search index of the posts: kept in step with ``posts``, built for old databases, and
queried, on both backends.

- **SQLite**: ``posts_fts``, an FTS5 table without a copy of the text (``content=''``: the
  index alone is a fraction of the posts table). Such a table forgets a post only when
  given the very text it indexed, so triggers on ``posts`` queue every insert, edit and
  delete (with the old values) in ``search_queue``, whoever makes it, and ``sync_in``
  applies the queue inside the transaction that wrote the posts. rssd's own new posts are
  indexed directly, with the text their parse worker computed, and not queued
  (``indexed_directly``). What is indexed is
  known from FTS5's own ``posts_fts_docsize`` (one row per indexed post): nothing is ever
  removed that was not indexed, nor indexed twice, which would corrupt the index.
- **PostgreSQL**: ``posts.search``, a tsvector with a GIN index, written by the same
  INSERT or UPDATE that writes the post (``dialect.post_search``). It is given the
  folded words of the same ``document`` (rssd/models/search.py), so both backends match
  the same words the same way.

A query is rendered from the parsed tree (``Query``) with words only: FTS5 gets each
phrase as a quoted string of letters and digits, PostgreSQL each phrase as a bound
parameter of ``phraseto_tsquery``. Nothing the user typed is parsed by either.

Databases from before the index get it built by ``backfill_batch``, a few hundred posts
per transaction above a stored high-water mark (``search_backfill``), which the daemon
runs in the background (rssd/daemon/search_backfill.py): interrupted, it resumes there.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from msgspec import Struct

from rssd.models.post import PostCreate
from rssd.models.search import Document, Phrase, Query, document, folded_words
from rssd.repo.db import Database, Row, Tx
from rssd.repo.dialect import Dialect
from rssd.repo.fragments import NO_LIMIT
from rssd.repo.queries import POST_COLUMNS, PostFilter, PostRow, post_filters

#: Column weights of the rank: title, text, author (bm25's; tsvector weights A, D, B).
BM25 = "bm25(posts_fts, 10.0, 1.0, 5.0)"
BACKFILL_BATCH = 500

_DELETE = (
    "INSERT INTO posts_fts (posts_fts, rowid, title, body, author) "
    "VALUES ('delete', :id, :title, :body, :author)"
)
_INSERT = "INSERT INTO posts_fts (rowid, title, body, author) VALUES (:id, :title, :body, :author)"
_DOC_COLUMNS = "id, title, summary, content, author"


def post_document(post: Any) -> Document:
    """The document of a post (anything with the columns): the one its parse worker
    computed (``PostCreate.search_doc``), else computed here."""
    doc = getattr(post, "search_doc", None)
    return doc if doc is not None else document(post.title, post.summary, post.content, post.author)


def search_params(post: Any) -> dict[str, str]:
    """The ``:s_*`` parameters of ``dialect.post_search`` for a post (anything with the columns)."""
    doc = post_document(post)
    return {
        "s_title": folded_words(doc.title),
        "s_body": folded_words(doc.body),
        "s_author": folded_words(doc.author),
    }


def _doc_row(post_id: int, doc: Document) -> dict[str, object]:
    return {"id": post_id, "title": doc.title, "body": doc.body, "author": doc.author}


def _doc_of(row: Row) -> Document:
    return document(row["title"], row["summary"], row["content"], row["author"])


async def _indexed(tx: Tx, ids: Iterable[int]) -> set[int]:
    rows = await tx.fetchall(
        f"SELECT id FROM posts_fts_docsize WHERE id IN {tx.dialect.in_json_int('ids')}",
        {"ids": json.dumps(sorted(set(ids)))},
    )
    return {int(row["id"]) for row in rows}


async def _index_current(tx: Tx, ids: Iterable[int]) -> int:
    """Index the posts ``ids`` as they are now (those that exist and are not indexed)."""
    wanted = set(ids) - await _indexed(tx, ids)
    if not wanted:
        return 0
    rows = await tx.fetchall(
        f"SELECT {_DOC_COLUMNS} FROM posts WHERE id IN {tx.dialect.in_json_int('ids')}",
        {"ids": json.dumps(sorted(wanted))},
    )
    await tx.executemany(_INSERT, [_doc_row(row["id"], _doc_of(row)) for row in rows])
    return len(rows)


@asynccontextmanager
async def indexed_directly(
    tx: Tx, source_id: int, posts: Sequence[PostCreate]
) -> AsyncIterator[None]:
    """Around the INSERT of ``posts`` (new, of source ``source_id``): on SQLite, index them
    right after it, with the text their parse worker computed, instead of through the
    queue. What is queued already is applied first (a new post may take the id of one
    deleted outside rssd); the row of ``search_direct`` keeps the insert trigger from
    queueing these posts, and goes in the same transaction (an error rolls both back).
    Nothing on PostgreSQL, where the INSERT writes the tsvector."""
    if not tx.dialect.search_table or not posts:
        yield
        return
    await sync_in(tx)
    await tx.execute("INSERT INTO search_direct (id) VALUES (1)")
    yield
    await tx.execute("DELETE FROM search_direct")
    rows = await tx.fetchall(
        "SELECT id, external_id FROM posts WHERE content_source_id = :source_id "
        f"AND external_id IN {tx.dialect.in_json_text('external_ids')}",
        {"source_id": source_id, "external_ids": json.dumps([p.external_id for p in posts])},
    )
    ids = {row["external_id"]: int(row["id"]) for row in rows}
    await tx.executemany(
        _INSERT, [_doc_row(ids[post.external_id], post_document(post)) for post in posts]
    )


async def sync_in(tx: Tx) -> None:
    """Apply the queued changes of ``posts`` to the index, inside the caller's transaction
    (the one that made them). Does nothing on PostgreSQL, where the write did it."""
    if not tx.dialect.search_table:
        return
    queued = await tx.fetchall(
        "SELECT seq, post_id, unindex, title, summary, content, author FROM search_queue "
        "ORDER BY seq"
    )
    if not queued:
        return
    ids = {int(row["post_id"]) for row in queued}
    indexed = await _indexed(tx, ids)
    removals = []
    for row in queued:  # in order: the first old version is what the index holds
        if row["unindex"] and row["post_id"] in indexed:
            removals.append(_doc_row(row["post_id"], _doc_of(row)))
            indexed.discard(row["post_id"])
    if removals:
        await tx.executemany(_DELETE, removals)
    await _index_current(tx, ids)
    await tx.execute("DELETE FROM search_queue WHERE seq <= :last", {"last": queued[-1]["seq"]})


class Backfill(Struct, frozen=True):
    """How far building the index of the posts from before it has come."""

    next_id: int  # posts from here up to last_id are still to be looked at
    last_id: int  # the newest post when the index was created
    done: int  # posts indexed so far, of
    total: int  # those the backfill has to look at (both 0 once complete)

    @property
    def complete(self) -> bool:
        return self.next_id > self.last_id


async def backfill_state(tx: Tx) -> Backfill:
    row = await tx.fetchone("SELECT next_id, last_id FROM search_backfill WHERE id = 1")
    next_id, last_id = (int(row["next_id"]), int(row["last_id"])) if row else (1, 0)
    if next_id > last_id:  # complete: no need to count
        return Backfill(next_id, last_id, 0, 0)
    counts = await tx.fetchone(
        "SELECT count(*) AS total, count(*) FILTER (WHERE id < :next_id) AS done FROM posts "
        "WHERE id <= :last_id",
        {"next_id": next_id, "last_id": last_id},
    )
    assert counts is not None
    return Backfill(next_id, last_id, int(counts["done"]), int(counts["total"]))


async def backfill_batch(tx: Tx, batch: int = BACKFILL_BATCH) -> bool:
    """Index the next ``batch`` posts from before the index, move the high-water mark past
    them; True when nothing is left. One transaction: stopped anywhere, nothing is lost."""
    row = await tx.fetchone("SELECT next_id, last_id FROM search_backfill WHERE id = 1")
    if row is None or row["next_id"] > row["last_id"]:
        return True
    ids = [
        int(r["id"])
        for r in await tx.fetchall(
            "SELECT id FROM posts WHERE id >= :next_id AND id <= :last_id ORDER BY id LIMIT :batch",
            {"next_id": row["next_id"], "last_id": row["last_id"], "batch": batch},
        )
    ]
    if tx.dialect.search_table:
        await _index_current(tx, ids)
    elif ids:
        rows = await tx.fetchall(
            f"SELECT {_DOC_COLUMNS} FROM posts WHERE id IN {tx.dialect.in_json_int('ids')}",
            {"ids": json.dumps(ids)},
        )
        await tx.executemany(
            f"UPDATE posts SET search = {tx.dialect.post_search} WHERE id = :id",
            [{"id": r["id"], **search_params(_Post(r))} for r in rows],
        )
    next_id = ids[-1] + 1 if len(ids) == batch else int(row["last_id"]) + 1
    await tx.execute(
        "UPDATE search_backfill SET next_id = :next_id WHERE id = 1", {"next_id": next_id}
    )
    return next_id > int(row["last_id"])


class _Post:
    """A row's document columns as attributes (what ``search_params`` reads)."""

    def __init__(self, row: Row) -> None:
        self.title, self.summary = row["title"], row["summary"]
        self.content, self.author = row["content"], row["author"]


# -- queries --------------------------------------------------------------------------------


def fts5_match(query: Query) -> str:
    """The FTS5 expression of ``query``: quoted phrases of words only (a word is letters and
    digits, so no quote or operator can be in one; doubled anyway, as FTS5 escapes)."""

    def phrase(p: Phrase) -> str:
        return '"' + " ".join(p.words).replace('"', '""') + '"'

    def either(group: tuple[Phrase, ...]) -> str:
        return phrase(group[0]) if len(group) == 1 else f"({' OR '.join(map(phrase, group))})"

    wanted = " AND ".join(either(group) for group in query.groups)
    if query.exclude:
        return f"({wanted}) NOT ({' OR '.join(map(phrase, query.exclude))})"
    return wanted


def tsquery_sql(query: Query) -> tuple[str, dict[str, str]]:
    """A PostgreSQL tsquery expression for ``query``: each phrase a bound parameter of
    ``phraseto_tsquery``, joined by tsquery's own operators in SQL."""
    params: dict[str, str] = {}

    def phrase(p: Phrase) -> str:
        name = f"q{len(params)}"
        params[name] = folded_words(" ".join(p.words))
        return f"phraseto_tsquery('simple', :{name})"

    def either(group: tuple[Phrase, ...]) -> str:
        return f"({' || '.join(map(phrase, group))})"

    sql = " && ".join(either(group) for group in query.groups)
    if query.exclude:
        sql = f"({sql}) && !!({' || '.join(map(phrase, query.exclude))})"
    return sql, params


#: A query matching more posts than this (and more than its ``--limit``) is ranked among
#: its newest matches only: finding them walks the posts newest first and stops, where
#: ranking every match of a common word reads each one (PostgreSQL: its tsvector) and
#: takes seconds at half a million posts. Both backends bound it alike, so they agree.
RANK_WINDOW = 1000

#: PostgreSQL: how the newest matches are found. Walking the posts newest first pays for
#: every post it passes (its tsvector, stored out of line, is read to test it), the GIN
#: index for every match (each read to be sorted): walk when matches are so dense that
#: the walk passes fewer posts, ``window / share``, than half the matches, ``share x
#: posts / 2``: a post passed cost about twice a match read through the index at 500,000
#: posts (3 and 1.4 us, bench/search.py). PostgreSQL's own planner leaves the out-of-line
#: read out of its cost and walks for mid-frequency words too (10x slower); rssd asks for
#: its estimate of the matches instead, and decides here.
WALK_FACTOR = 2.0


def walks_newest(matches: float, posts: float, window: int) -> bool:
    """Whether to find the newest ``window`` of ``matches`` (estimated, of ``posts``) by
    walking the posts newest first rather than through the index."""
    return matches * matches > WALK_FACTOR * window * posts


# The newest matches (one more than the window, to know whether there were more), then the
# best of them; ``windowed``: whether the window left matches out.
_SQLITE_SEARCH = """
WITH recent AS ({recent}
    ORDER BY 1 DESC
    LIMIT :window_probe
),
hits AS (
    SELECT posts_fts.rowid AS id, {bm25} AS rank
    FROM posts_fts
    WHERE posts_fts MATCH :match AND posts_fts.rowid > (
        SELECT CASE WHEN count(*) > :window THEN min(id) ELSE 0 END FROM recent){only_recent}
    ORDER BY rank, posts_fts.rowid DESC
    LIMIT :limit
)
SELECT {columns}, h.rank, (SELECT count(*) > :window FROM recent) AS windowed
FROM hits h JOIN posts p ON p.id = h.id JOIN content_sources s ON s.id = p.content_source_id
ORDER BY h.rank, p.id DESC
"""

#: SQLite's newest matches: without filters, FTS5 alone gives them newest first; with
#: them, the posts the filters keep are walked newest first (by their indexes) against
#: the set of matches, which a selective filter (one feed) makes 10x faster than testing
#: every match against the filters. The ranking then reads the index's matches past the
#: window's oldest (a range it scans in order) and keeps those of the window: ``+`` keeps
#: SQLite from looking each one up in the index instead, 100x slower for a common word.
_SQLITE_RECENT = "SELECT posts_fts.rowid AS id FROM posts_fts WHERE posts_fts MATCH :match"
_SQLITE_RECENT_FILTERED = (
    "SELECT p.id AS id FROM posts p JOIN content_sources s ON s.id = p.content_source_id "
    "WHERE {where} AND p.id IN (SELECT rowid FROM posts_fts WHERE posts_fts MATCH :match)"
)
_SQLITE_ONLY_RECENT = " AND +posts_fts.rowid IN (SELECT id FROM recent)"

_PG_SEARCH = """
WITH recent AS (
    SELECT p.id, p.search
    FROM posts p {join}
    WHERE p.search @@ ({tsquery}) AND {where}
    ORDER BY {newest}
    LIMIT :window_probe
),
hits AS (
    SELECT r.id, -ts_rank(r.search, ({tsquery}), 1) AS rank
    FROM recent r
    WHERE r.id > (SELECT CASE WHEN count(*) > :window THEN min(id) ELSE 0 END FROM recent)
    ORDER BY rank, r.id DESC
    LIMIT :limit
)
SELECT {columns}, h.rank, (SELECT count(*) > :window FROM recent) AS windowed
FROM hits h JOIN posts p ON p.id = h.id JOIN content_sources s ON s.id = p.content_source_id
ORDER BY h.rank, p.id DESC
"""


class SearchHit(Struct, frozen=True):
    """A post found, with its rank (lower is better; the backends' scales differ)."""

    post: PostRow
    rank: float


class Found(Struct, frozen=True):
    """The best posts found, and how many of the newest matches were ranked when there
    were more (None: every match was)."""

    hits: list[SearchHit]
    ranked_newest: int | None = None


def rank_window(limit: int | None, window: int = RANK_WINDOW) -> int:
    """How many of the newest matches are ranked: the window, or all the posts asked for
    (no ``--limit``: every match)."""
    return NO_LIMIT if limit is None else max(window, limit)


def search_query(
    dialect: Dialect,
    query: Query,
    wanted: PostFilter,
    window: int = RANK_WINDOW,
    *,
    walk: bool = True,
) -> tuple[str, dict[str, Any]]:
    """The statement and parameters that find ``query`` among the posts ``wanted`` selects,
    best first (also what the tests and the bench read); ``walk``: see ``walks_newest``."""
    where, params = post_filters(wanted)
    ranked = rank_window(wanted.limit, window)
    params |= {"window": ranked, "window_probe": ranked + 1}
    if dialect.search_table:
        filtered = where != "TRUE"
        sql = _SQLITE_SEARCH.format(
            recent=_SQLITE_RECENT_FILTERED.format(where=where) if filtered else _SQLITE_RECENT,
            only_recent=_SQLITE_ONLY_RECENT if filtered else "",
            bm25=BM25,
            columns=POST_COLUMNS,
        )
        params["match"] = fts5_match(query)
        return sql, params
    tsquery, words = tsquery_sql(query)
    join = "JOIN content_sources s ON s.id = p.content_source_id" if where != "TRUE" else ""
    # ``p.id + 0`` is no column the primary key's order can give: the index finds them.
    newest = "p.id DESC" if walk else "p.id + 0 DESC"
    sql = _PG_SEARCH.format(
        tsquery=tsquery, join=join, where=where, columns=POST_COLUMNS, newest=newest
    )
    return sql, {**params, **words}


def estimate_query(query: Query, wanted: PostFilter) -> tuple[str, dict[str, Any]]:
    """PostgreSQL: the planner's estimate of the posts matching ``query`` and the filters
    (EXPLAIN: nothing is read), beside its estimate of all the posts."""
    where, params = post_filters(wanted)
    tsquery, words = tsquery_sql(query)
    join = "JOIN content_sources s ON s.id = p.content_source_id" if where != "TRUE" else ""
    sql = (
        f"EXPLAIN (FORMAT JSON) SELECT 1 FROM posts p {join} "
        f"WHERE p.search @@ ({tsquery}) AND {where}"
    )
    return sql, {**params, **words}


async def _walks(tx: Tx, query: Query, wanted: PostFilter, window: int) -> bool:
    sql, params = estimate_query(query, wanted)
    plan = await tx.fetchone(sql, params)
    total = await tx.fetchone("SELECT reltuples FROM pg_class WHERE oid = 'posts'::regclass")
    assert plan is not None and total is not None
    found = plan[0]
    document = json.loads(found) if isinstance(found, str) else found
    return walks_newest(float(document[0]["Plan"]["Plan Rows"]), float(total[0]), window)


async def search_posts(
    db: Database, query: Query, wanted: PostFilter, window: int = RANK_WINDOW
) -> Found:
    """The posts matching ``query`` (and the filters), best first: of the newest
    ``rank_window`` matches when there are more. On PostgreSQL the planner's estimate and
    the search are one read transaction (one pooled connection)."""
    ranked = rank_window(wanted.limit, window)

    async def work(tx: Tx) -> list[Row]:
        walk = tx.dialect.search_table or await _walks(tx, query, wanted, ranked)
        sql, params = search_query(tx.dialect, query, wanted, window, walk=walk)
        return await tx.fetchall(sql, params)

    rows = await db.read(work)
    names = list(PostRow.__struct_fields__)
    hits = [SearchHit(PostRow(*(row[name] for name in names)), float(row["rank"])) for row in rows]
    windowed = bool(rows) and bool(rows[0]["windowed"])
    return Found(hits, ranked if windowed else None)


async def backfill_progress(db: Database) -> Backfill:
    return await db.snapshot(backfill_state)
