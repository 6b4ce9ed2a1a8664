"""``rssd posts --search`` at half a million posts, on SQLite and PostgreSQL (issue #27).

    .venv/bin/python bench/search.py                         # SQLite, 500,000 posts
    .venv/bin/python bench/search.py --postgres postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/search.py --cold --base REV --feeds 600   # REV without the index

Default mode: a database of ``--posts`` synthetic posts (``--feeds`` feeds) made through
rssd's own schema, with the search index built as rssd builds it (the same
``rssd.models.search.document``; inserted in bulk, not a batch per transaction; on
PostgreSQL by COPY, the tsvector written out here and checked against the database's
own on a sample); then:

- the size of the index beside the posts table (SQLite: ``dbstat``; PostgreSQL: the GIN
  index plus the ``search`` column, beside the rest of the posts table);
- ``rssd posts --search ... --limit 20`` as a new process, as an operator runs it beside a
  daemon (config.toml lists the feeds and was synced as ``rssd run`` syncs it), five
  times each, for a common word (in 20% of the posts), a rarer one, a phrase, an
  exclusion, a common word within one feed, and the common word with a config.toml
  edited since (validated in full first); and the search alone (``query s``: the query
  parsed, run and its 20 rows read, in this process, start-up excluded);
- the backfill (what the migration of an existing database does): the index of the last
  ``--backfill`` posts forgotten, then rebuilt by ``build_index``, timed.

``--cold``: the cold scenario of bench/run.py (``--feeds`` feeds x 50 posts, SQLite),
alternately with this checkout, with ``--base`` (a git revision without the index,
exported to a temporary folder and put first on PYTHONPATH) and with each ``--also``
revision (exported the same way), ``--rounds`` times each; prints feeds/s of each run and
each one's ratio of medians to the base's, with the load average.

The text is made of 5,000 paragraphs of pseudo-words (Zipf-like, 20,000 of them) put
together per post, with planted words at known shares; real feeds have a larger
vocabulary, which makes the index somewhat larger per post.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

from msgspec.structs import asdict

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from rssd.daemon.search_backfill import build_index  # noqa: E402
from rssd.models.search import document  # noqa: E402
from rssd.repo.open import open_database  # noqa: E402
from rssd.repo.search import search_params  # noqa: E402

NOW = "2026-12-01T00:00:00.000Z"
#: Planted words and the share of posts that carry them (in the text, sometimes the title).
PLANTED = {"release": 0.20, "kernel": 0.02, "zeppelin": 0.0005}
PHRASE = ("security", "update", 0.01)
#: The common word again, with a config.toml edited since the daemon synced it: validated
#: in full first (pydantic), as every command does with a config the daemon has not seen.
EDITED = "common word, config.toml edited"

QUERIES = [
    ("common word (20%)", ["--search", "release"]),
    ("word in 2%", ["--search", "kernel"]),
    ("rare word (0.05%)", ["--search", "zeppelin"]),
    ('phrase (1%) "security update"', ["--search", '"security update"']),
    ("common word, excluding one", ["--search", "release -kernel"]),
    ("common word in one feed", ["--search", "release", "--source", "7"]),
    ("no --search (newest 20)", []),
    (EDITED, ["--search", "release"]),
]


class Post:
    """The columns ``search_params`` reads."""

    def __init__(self, title: str, summary: str, content: str, author: str) -> None:
        self.title, self.summary, self.content, self.author = title, summary, content, author


def vocabulary(rng: random.Random) -> list[str]:
    syllables = [a + b for a in "bcdfghklmnprstvz" for b in ("a", "e", "i", "o", "u", "ai", "ou")]
    words = {"".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(30_000)}
    return sorted(words - set(PLANTED) - {PHRASE[0], PHRASE[1]})[:20_000]


def posts(count: int, feeds: int, seed: int = 27) -> Iterator[tuple[int, int, Post, str]]:
    """(id, feed, post, published_at) for ``count`` posts spread over ``feeds`` feeds."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    cum = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(words))))
    paragraphs = [
        " ".join(rng.choices(words, cum_weights=cum, k=rng.randint(30, 70))) for _ in range(5000)
    ]
    titles = [
        " ".join(rng.choices(words, cum_weights=cum, k=rng.randint(4, 9))) for _ in range(5000)
    ]
    authors = [f"{rng.choice(words).title()} {rng.choice(words).title()}" for _ in range(300)]
    for n in range(1, count + 1):
        first, second = rng.choice(paragraphs), rng.choice(paragraphs)
        title = rng.choice(titles)
        extra = [w for w, share in PLANTED.items() if rng.random() < share]
        if rng.random() < PHRASE[2]:
            extra.append(f"{PHRASE[0]} {PHRASE[1]}")
        if extra and rng.random() < 0.3:
            title = f"{title} {extra.pop()}"
        second = " ".join([second, *extra])
        content = f"<p>{first}</p>\n<p><a href='https://example.org/{n}'>{second}</a></p>"
        day = 1 + n * 300 // count
        yield (
            n,
            1 + n % feeds,
            Post(title, f"<p>{first}</p>", content, rng.choice(authors)),
            (f"2026-{1 + day // 31:02d}-{1 + day % 28:02d}T{n % 24:02d}:00:00.000Z"),
        )


def write_config(config: Path, target: Path | str, feeds: int) -> None:
    """config.toml naming the database and the feeds the fill made."""
    lines = [f"database = {json.dumps(str(target))}"]
    for i in range(1, feeds + 1):
        lines += ["[[feeds]]", f'url = "http://feed{i}.example/rss"', f'name = "Feed {i}"']
    config.write_text("\n".join(lines) + "\n")


async def sync(config: Path) -> None:
    """Sync config.toml as ``rssd run`` does at start: what an operator's ``rssd posts``
    finds beside a running daemon (a config it has validated, not validated again)."""
    from rssd.daemon.startup import file_mtime  # noqa: PLC0415
    from rssd.models.config import load_config  # noqa: PLC0415
    from rssd.repo.config_sync import sync_config  # noqa: PLC0415

    loaded = load_config(config)
    db = await open_database(loaded.database)
    try:
        await sync_config(db, loaded, file_mtime=file_mtime(config), daemon_id=None, guard=False)
    finally:
        await db.close()


async def create(target: Path | str) -> None:
    """rssd's schema, through rssd (migrations, schema file)."""
    await (await open_database(target)).close()


def fill_sqlite(path: Path, count: int, feeds: int) -> None:
    asyncio.run(create(path))
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        conn.executemany(
            "INSERT INTO content_sources (id, url, name, interval_minutes, timeout_seconds, "
            "created_at, updated_at) VALUES (?, ?, ?, 60, 30, ?, ?)",
            [
                (i, f"http://feed{i}.example/rss", f"Feed {i}", NOW, NOW)
                for i in range(1, feeds + 1)
            ],
        )
        # The bulk fill indexes directly (the trigger's queue is for rssd's own writes).
        conn.execute("DROP TRIGGER posts_search_insert")
        batch: list[tuple[object, ...]] = []
        docs: list[tuple[object, ...]] = []
        for n, feed, post, published in posts(count, feeds):
            batch.append(
                (
                    n,
                    feed,
                    f"urn:{n}",
                    post.title,
                    f"https://example.org/{n}",
                    post.author,
                    post.summary,
                    post.content,
                    published,
                    NOW,
                    f"h{n}",
                )
            )
            doc = document(post.title, post.summary, post.content, post.author)
            docs.append((n, doc.title, doc.body, doc.author))
            if len(batch) == 20_000:
                flush_sqlite(conn, batch, docs)
        flush_sqlite(conn, batch, docs)
        conn.commit()
    asyncio.run(create(path))  # the trigger back, as schema.sql has it


def flush_sqlite(
    conn: sqlite3.Connection, batch: list[tuple[object, ...]], docs: list[tuple[object, ...]]
) -> None:
    conn.executemany(
        "INSERT INTO posts (id, content_source_id, external_id, title, url, author, summary, "
        "content, published_at, created_at, content_hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        batch,
    )
    conn.executemany("INSERT INTO posts_fts (rowid, title, body, author) VALUES (?,?,?,?)", docs)
    conn.commit()
    batch.clear()
    docs.clear()


def tsvector_literal(params: dict[str, str]) -> str:
    """What ``dialect.post_search`` makes of ``search_params``, built here so that the fill
    can COPY it: each field's words at their positions (title A, author B, text D), one
    position skipped between fields. ``fill_postgres`` checks it against PostgreSQL's own
    on the first posts."""
    positions: dict[str, list[str]] = {}
    position = 0
    for key, weight in (("s_title", "A"), ("s_author", "B"), ("s_body", "")):
        for word in params[key].split():
            position += 1
            positions.setdefault(word, []).append(f"{min(position, 16383)}{weight}")
        position += 1
    return " ".join(f"'{w}':{','.join(p[:256])}" for w, p in sorted(positions.items()))


def fill_postgres(url: str, count: int, feeds: int) -> None:
    """COPY, the search column included (rssd's per-row INSERT would take an hour here)."""
    import psycopg  # noqa: PLC0415

    from rssd.repo.dialect import POSTGRES  # noqa: PLC0415
    from rssd.repo.postgres import translate  # noqa: PLC0415

    asyncio.run(create(url))
    columns = (
        "id, content_source_id, external_id, title, url, author, summary, content, "
        "published_at, created_at, content_hash, search"
    )
    check = translate(f"SELECT CAST(:literal AS tsvector) = {POSTGRES.post_search}")
    with psycopg.connect(url, autocommit=False) as conn:
        with conn.cursor() as cursor:
            with cursor.copy(
                "COPY content_sources (id, url, name, interval_minutes, timeout_seconds, "
                "created_at, updated_at) FROM STDIN"
            ) as copy:
                for i in range(1, feeds + 1):
                    copy.write_row(
                        (i, f"http://feed{i}.example/rss", f"Feed {i}", 60, 30, NOW, NOW)
                    )
            with cursor.copy(f"COPY posts ({columns}) FROM STDIN") as copy:
                for n, feed, post, published in posts(count, feeds):
                    params = search_params(post)
                    literal = tsvector_literal(params)
                    copy.write_row((
                        n, feed, f"urn:{n}", post.title, f"https://example.org/{n}", post.author,
                        post.summary, post.content, published, NOW, f"h{n}", literal,
                    ))  # fmt: skip
            for _, _, post, _ in posts(50, feeds):
                params = search_params(post)
                row = cursor.execute(check, {"literal": tsvector_literal(params), **params})
                same = row.fetchone()
                assert same is not None and same[0], "the COPY's tsvector differs from rssd's"
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('posts', 'id'), max(id)) FROM posts"
            )
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE posts")


def sizes_sqlite(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    by_name = {str(name): int(size) for name, size in rows}
    posts_indexes = ("posts_fetch_job", "posts_newest", "posts_source_newest", "posts_created")
    return {
        "posts table": by_name["posts"],
        "posts indexes": sum(by_name.get(n, 0) for n in posts_indexes)
        + sum(v for k, v in by_name.items() if k.startswith("sqlite_autoindex_posts")),
        "search index": sum(v for k, v in by_name.items() if k.startswith("posts_fts")),
    }


def sizes_postgres(url: str) -> dict[str, int]:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT pg_relation_size('posts'), "
            "  coalesce(pg_total_relation_size(reltoastrelid), 0), "
            "  (SELECT sum(pg_column_size(search)) FROM posts), "
            "  pg_relation_size('posts_search'), "
            "  pg_indexes_size('posts') - pg_relation_size('posts_search') "
            "FROM pg_class WHERE relname = 'posts'"
        ).fetchone()
    assert row is not None
    heap, toast, column, gin, others = row
    return {
        "posts table": int(heap) + int(toast) - int(column),
        "posts indexes": int(others),
        "search index": int(gin) + int(column),
    }


def run_cli(config: Path, args: list[str], runs: int) -> tuple[float, float, int]:
    """Median and fastest wall time of ``rssd posts ARGS --limit 20`` as new processes."""
    times = []
    lines = 0
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "rssd", "posts", "-c", str(config), "--limit", "20", *args],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        times.append(time.perf_counter() - started)
        lines = len(done.stdout.splitlines())
    return statistics.median(times), min(times), lines


async def in_process(target: Path | str, args: list[str], runs: int) -> float:
    """The median time of the search itself (parse, query, 20 rows), in this process."""
    from rssd.models.search import parse  # noqa: PLC0415
    from rssd.repo.queries import PostFilter, newest_posts  # noqa: PLC0415
    from rssd.repo.search import search_posts  # noqa: PLC0415

    db = await open_database(target, readonly=True)
    try:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            source = int(args[args.index("--source") + 1]) if "--source" in args else None
            wanted = PostFilter(source_id=source, limit=20)
            if args:
                await search_posts(db, parse(args[1]), wanted)
            else:
                await newest_posts(db, wanted)
            times.append(time.perf_counter() - started)
        return statistics.median(times)
    finally:
        await db.close()


async def backfill(target: Path | str, last: int) -> tuple[int, float]:
    """Forget the index of the newest ``last`` posts, rebuild it as the migration's
    backfill does; (posts, seconds)."""
    db = await open_database(target)
    try:

        async def forget(tx: object) -> None:
            from rssd.repo.db import Tx  # noqa: PLC0415

            assert isinstance(tx, Tx)
            row = await tx.fetchone("SELECT max(id) AS top FROM posts")
            top = int(row["top"]) if row else 0
            if tx.dialect.name == "sqlite":
                rows = await tx.fetchall(
                    "SELECT id, title, summary, content, author FROM posts WHERE id > :low",
                    {"low": top - last},
                )
                await tx.executemany(
                    "INSERT INTO posts_fts (posts_fts, rowid, title, body, author) "
                    "VALUES ('delete', :id, :title, :body, :author)",
                    [
                        {
                            "id": r["id"],
                            **asdict(document(r["title"], r["summary"], r["content"], r["author"])),
                        }
                        for r in rows
                    ],
                )
            else:
                await tx.execute(
                    "UPDATE posts SET search = NULL WHERE id > :low", {"low": top - last}
                )
            await tx.execute(
                "UPDATE search_backfill SET next_id = :low, last_id = :top",
                {"low": top - last + 1, "top": top},
            )

        await db.write(forget)
        started = time.perf_counter()
        await build_index(db, pause=0)
        return last, time.perf_counter() - started
    finally:
        await db.close()


def main_search(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="rssd-search-"))
    pg_name = None
    if args.postgres:
        import psycopg  # noqa: PLC0415
        from yarl import URL  # noqa: PLC0415

        pg_name = f"rssd_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{pg_name}"')
        target: Path | str = str(URL(args.postgres).with_path(f"/{pg_name}"))
    else:
        target = folder / "rssd.sqlite3"
    config = folder / "config.toml"
    edited = folder / "edited.toml"
    try:
        started = time.perf_counter()
        if isinstance(target, Path):
            fill_sqlite(target, args.posts, args.feeds)
        else:
            fill_postgres(target, args.posts, args.feeds)
        fill_seconds = time.perf_counter() - started
        write_config(config, target, args.feeds)
        asyncio.run(sync(config))
        edited.write_text(config.read_text())
        sizes = sizes_sqlite(target) if isinstance(target, Path) else sizes_postgres(target)
        load = os.getloadavg()
        timings = [
            (
                name,
                *run_cli(edited if name == EDITED else config, q, args.runs),
                asyncio.run(in_process(target, q, args.runs)),
            )
            for name, q in QUERIES
        ]
        rebuilt, seconds = asyncio.run(backfill(target, args.backfill))
        load_after = os.getloadavg()
        backend = "SQLite" if isinstance(target, Path) else "PostgreSQL"
        print(
            f"{backend}, {args.posts:,} posts in {args.feeds:,} feeds "
            f"(filled in {fill_seconds:.0f} s); load average {load[0]:.1f} before the "
            f"queries, {load_after[0]:.1f} after"
        )
        mb = 1024 * 1024
        for name, size in sizes.items():
            print(f"  {name:<14} {size / mb:8.1f} MB")
        print(f"  search index / posts table: {sizes['search index'] / sizes['posts table']:.2f}x")
        print(f"  `rssd posts ... --limit 20`, {args.runs} runs each, as new processes:")
        print(f"  {'query':<34} {'median s':>9} {'fastest s':>10} {'lines':>6} {'query s':>8}")
        for name, median, fastest, lines, alone in timings:
            print(f"  {name:<34} {median:9.3f} {fastest:10.3f} {lines:6d} {alone:8.3f}")
        print(
            f"  backfill: {rebuilt:,} posts indexed in {seconds:.1f} s "
            f"({rebuilt / seconds:,.0f} posts/s)"
        )
        if args.json:
            args.json.write_text(json.dumps({
                "backend": backend, "posts": args.posts, "feeds": args.feeds, "sizes": sizes,
                "queries": timings, "backfill_posts_per_s": rebuilt / seconds,
                "load": [load, load_after],
            }, indent=2))  # fmt: skip
    finally:
        if pg_name is not None and args.keep:
            print(f"  kept: {target}")
        elif pg_name is not None:
            import psycopg  # noqa: PLC0415

            with psycopg.connect(args.postgres, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{pg_name}" WITH (FORCE)')
        if not args.keep:
            subprocess.run(["rm", "-rf", str(folder)], check=False)


def export(rev: str, into: Path) -> Path:
    """The tree of ``rev``, in a folder of ``into`` (to be put first on PYTHONPATH)."""
    folder = Path(tempfile.mkdtemp(prefix="rev-", dir=into))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def main_cold(args: argparse.Namespace) -> None:
    """bench/run.py's cold scenario, this checkout, ``--base`` and any ``--also`` taking turns."""
    tmp = Path(tempfile.mkdtemp(prefix="rssd-cold-"))
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    arms = [(f"without ({args.base})", {**clean, "PYTHONPATH": str(export(args.base, tmp))})]
    arms += [(rev, {**clean, "PYTHONPATH": str(export(rev, tmp))}) for rev in args.also]
    arms.append(("this checkout", clean))
    results: dict[str, list[float]] = {name: [] for name, _ in arms}
    main_cpu: dict[str, list[float]] = {name: [] for name, _ in arms}
    loads = [os.getloadavg()[0]]
    try:
        for _ in range(args.rounds):
            for name, env in arms:
                out = tmp / f"run-{len(loads)}.json"
                subprocess.run(
                    [sys.executable, str(BENCH / "run.py"), "--tools", "rssd", "--scenarios",
                     "cold", "--feeds", str(args.feeds), "--json", str(out)],
                    env=env, check=True, capture_output=True,
                )  # fmt: skip
                (result,) = json.loads(out.read_text())["results"]
                if result["failed"]:  # e.g. an old revision that refuses today's config
                    raise SystemExit(f"{name}: {result['failed']} feeds failed; no figure")
                results[name].append(float(result["feeds_per_second"]))
                main_cpu[name].append(float(result["main_cpu_seconds"]))
                loads.append(os.getloadavg()[0])
                print(
                    f"  {name:<20} {result['feeds_per_second']:7.1f} feeds/s, rssd's process "
                    f"{result['main_cpu_seconds']:.2f} CPU s",
                    flush=True,
                )
    finally:
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
    without = statistics.median(results[arms[0][0]])
    print(
        f"cold, {args.feeds:,} feeds x 50 posts, SQLite, {args.rounds} rounds each, alternating; "
        f"load average {min(loads):.1f}-{max(loads):.1f}"
    )
    cpu_without = statistics.median(main_cpu[arms[0][0]])
    print(
        f"  median without the index ({args.base}): {without:.1f} feeds/s, "
        f"rssd's process {cpu_without:.2f} CPU s"
    )
    for name, _ in arms[1:]:
        median, cpu = statistics.median(results[name]), statistics.median(main_cpu[name])
        print(
            f"  {name}: {median:.1f} feeds/s, ratio {median / without:.2f} "
            f"(a drop of {100 * (1 - median / without):.0f}%); rssd's process {cpu:.2f} CPU s, "
            f"{cpu / cpu_without:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=500_000)
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5, help="runs of each command")
    parser.add_argument("--backfill", type=int, default=20_000, help="posts re-indexed, timed")
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="on a new database of this server")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--cold", action="store_true", help="cold runs with/without the index")
    parser.add_argument("--base", default="main", help="--cold: the revision without the index")
    parser.add_argument("--rounds", type=int, default=2, help="--cold: runs of each")
    parser.add_argument(
        "--also", action="append", default=[], metavar="REV", help="--cold: another revision to run"
    )
    args = parser.parse_args()
    if args.cold:
        if args.feeds == 1000:
            args.feeds = 300
        main_cold(args)
    else:
        main_search(args)


if __name__ == "__main__":
    main()
