"""Shared parts of the resilience suite (tests/test_resilience_*.py).

Every resilience case runs real parts: a loopback server that misbehaves in one precise way,
a real SQLite file, rssd's real run (in-process ``run_once`` or a ``python -m rssd``
subprocess). Each asserts three things: the right error_code (or the right posts), the
good feed beside the hostile one still fetched in the same run, and the run bounded (it
ends within a pytest-level deadline; memory is measured where a case is about memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import sqlite3
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from rssd.daemon.once import RunSummary, run_once
from tests.conftest import FeedServer, rss
from tests.support.config import Feed, make_config

#: Posts in every good feed: the witness that the run went on beside the hostile feed.
GOOD_ITEMS = 3
#: Ends a run that would otherwise hang: the time bound of every case.
RUN_DEADLINE = 240.0
#: Peak RSS allowed to an rssd process fed a hostile body (it idles at ~100 MB).
MAX_RSS_BYTES = 400 * 1024 * 1024

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# -- feeds ---------------------------------------------------------------------------------


def good_feed(server: FeedServer, path: str = "/good") -> str:
    """A small valid feed whose posts prove the run still fetched it."""
    tag = path.strip("/").replace("/", "-")
    items = [
        {"title": f"{tag} post {i}", "guid": f"urn:{tag}:{i}", "link": f"http://example.org/{i}"}
        for i in range(GOOD_ITEMS)
    ]
    return server.static(path, rss(items, title=f"good {tag}"))


# -- reading the database ------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    id: int
    status: str
    error_code: str | None
    error_message: str | None
    http_status: int | None
    posts_count: int
    bytes: int | None
    final_url: str | None


@dataclass(frozen=True)
class Post:
    external_id: str
    title: str | None
    url: str | None
    author: str | None
    summary: str | None
    content: str | None
    published_at: str | None
    updated_at: str | None

    def texts(self) -> list[str]:
        fields = (self.external_id, self.title, self.url, self.author, self.summary, self.content)
        return [value for value in fields if value is not None]


@dataclass
class RunResult:
    """The database after a run: jobs and posts per feed URL."""

    jobs: dict[str, list[Job]] = field(default_factory=dict)
    posts: dict[str, list[Post]] = field(default_factory=dict)
    summary: RunSummary | None = None

    def job(self, url: str) -> Job:
        """The feed's latest job: its state."""
        assert self.jobs.get(url), f"no fetch_job for {url}"
        return self.jobs[url][-1]

    def assert_failed(self, url: str, code: str, *, http_status: int | None = None) -> Job:
        job = self.job(url)
        assert (job.status, job.error_code) == ("FAILED", code), (url, job)
        assert job.error_message, f"a FAILED job says why: {job}"
        if http_status is not None:
            assert job.http_status == http_status, job
        assert not self.posts.get(url), f"a failed fetch stored posts: {self.posts[url]}"
        return job

    def assert_completed(self, url: str, posts: int) -> Job:
        job = self.job(url)
        assert (job.status, job.error_code) == ("COMPLETED", None), (url, job)
        assert len(self.posts.get(url, [])) == posts, (url, job, self.posts.get(url))
        return job

    def assert_good(self, *urls: str) -> None:
        """The good feeds were fetched and stored despite their hostile neighbours."""
        for url in urls:
            self.assert_completed(url, GOOD_ITEMS)


def read_results(database: Path) -> RunResult:
    result = RunResult()
    with contextlib.closing(sqlite3.connect(database)) as db:
        db.row_factory = sqlite3.Row
        for row in db.execute(
            # The attempts; a QUEUED job is a source's next fetch (the schedule), not one.
            "SELECT s.url, j.* FROM fetch_job j JOIN content_sources s "
            "ON s.id = j.content_source_id WHERE j.status != 'QUEUED' ORDER BY j.id"
        ):
            result.jobs.setdefault(row["url"], []).append(
                Job(
                    id=row["id"],
                    status=row["status"],
                    error_code=row["error_code"],
                    error_message=row["error_message"],
                    http_status=row["http_status"],
                    posts_count=row["posts_count"],
                    bytes=row["bytes"],
                    final_url=row["final_url"],
                )
            )
        for row in db.execute(
            "SELECT s.url AS source_url, p.* FROM posts p JOIN content_sources s "
            "ON s.id = p.content_source_id ORDER BY p.id"
        ):
            result.posts.setdefault(row["source_url"], []).append(
                Post(
                    external_id=row["external_id"],
                    title=row["title"],
                    url=row["url"],
                    author=row["author"],
                    summary=row["summary"],
                    content=row["content"],
                    published_at=row["published_at"],
                    updated_at=row["updated_at"],
                )
            )
    return result


def integrity(database: Path) -> str:
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db:
        rows = db.execute("PRAGMA integrity_check").fetchall()
    return "; ".join(str(row[0]) for row in rows)


def check_invariants(database: Path) -> None:
    """What must hold after any crash, kill or fault (checked with plain sqlite3).

    - the file is intact;
    - no duplicate post, every post belongs to an existing source, and the job that last
      wrote it is one that COMPLETED for that source (posts and COMPLETED are one
      transaction: a post written by a job that did not complete is a lost rollback);
    - every post stored was counted as new by exactly one COMPLETED job: the sum of
      COMPLETED jobs' posts_count equals the number of posts (none lost, none invented;
      holds while no job has been pruned, as in these tests);
    - every FAILED job says why, and no COMPLETED job carries an error.
    """
    assert integrity(database) == "ok"
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db:

        def one(sql: str) -> int:
            return int(db.execute(sql).fetchone()[0])

        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        duplicates = db.execute(
            "SELECT content_source_id, external_id, count(*) FROM posts "
            "GROUP BY content_source_id, external_id HAVING count(*) > 1"
        ).fetchall()
        assert duplicates == []
        assert one("SELECT count(*) FROM posts p LEFT JOIN content_sources s "
                   "ON s.id = p.content_source_id WHERE s.id IS NULL") == 0  # fmt: skip
        orphans = db.execute(
            "SELECT p.id, p.fetch_job_id, j.status FROM posts p "
            "LEFT JOIN fetch_job j ON j.id = p.fetch_job_id "
            "WHERE p.fetch_job_id IS NOT NULL AND (j.id IS NULL OR j.status != 'COMPLETED' "
            "OR j.content_source_id != p.content_source_id)"
        ).fetchall()
        assert orphans == [], f"posts written by a job that did not complete: {orphans[:5]}"
        counted = one(
            "SELECT coalesce(sum(posts_count), 0) FROM fetch_job WHERE status = 'COMPLETED'"
        )
        assert counted == one("SELECT count(*) FROM posts")
        assert one("SELECT count(*) FROM fetch_job WHERE status = 'FAILED' "
                   "AND (error_code IS NULL OR error_message IS NULL)") == 0  # fmt: skip


def active_jobs(database: Path) -> list[tuple[int, str]]:
    """Jobs in progress. (A QUEUED job is a source's next fetch: the schedule, not work.)"""
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db:
        return db.execute("SELECT id, status FROM fetch_job WHERE status = 'ONGOING'").fetchall()


# -- running rssd ---------------------------------------------------------------------------


async def run_feeds(
    tmp_path: Path, urls: Sequence[Feed], *, deadline: float = RUN_DEADLINE, **settings: object
) -> RunResult:
    """``run_once`` in-process over ``urls`` (URLs or feed tables; one database in
    tmp_path), within a deadline (a hang guard)."""
    config = make_config(tmp_path, urls, **settings)
    async with asyncio.timeout(deadline):
        summary = await run_once(config)
    # Finalize now what the run left unreferenced (e.g. a task whose exception nobody
    # retrieved: its __del__ logs a traceback). Left to a later, random moment, that logging
    # can land inside pytest's own ast.parse of a failure report, which CPython 3.11 then
    # fails with "SystemError: AST constructor recursion depth mismatch" (INTERNALERROR).
    gc.collect()
    assert config.database_path is not None
    result = read_results(config.database_path)
    result.summary = summary
    return result


# -- a server that speaks HTTP by hand ------------------------------------------------------


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The request line and headers (the request is read first: closing a socket with
    unread data sends an RST, which would turn every case into a reset)."""
    return await reader.readuntil(b"\r\n\r\n")


class RawServer:
    """A loopback TCP server for responses aiohttp's server will not produce: lying
    Content-Length, silence, trickles, resets. ``route(path, handler)``; the handler gets
    the connection after the request head was read."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.routes: dict[str, RawHandler] = {}
        self.hits: dict[str, int] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def route(self, path: str, handler: RawHandler) -> str:
        self.routes[path] = handler
        return self.url(path)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await read_head(reader)
            path = head.split(b" ", 2)[1].decode("latin-1")
            self.hits[path] = self.hits.get(path, 0) + 1
            handler = self.routes.get(path)
            if handler is None:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
            else:
                await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def response_head(status: str = "200 OK", **headers: str | int) -> bytes:
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), as a crashing server or a middlebox does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def refused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- compression bombs ----------------------------------------------------------------------

BOMB_INFLATED = 1 << 30  # 1 GiB of zeros
_MIB = 1 << 20
GIB_OF_ZEROS_CRC32 = 0x5B64C2B0


@cache
def _deflate_blocks() -> tuple[bytes, bytes]:
    """Raw deflate of 1 MiB of zeros, twice, each ended by a full flush: the second (and
    every later one) is byte-identical, so a 1 GiB stream is one block repeated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(_MIB)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    second = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    third = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert second == third
    return first, second


def _bomb_body() -> Iterator[bytes]:
    first, repeated = _deflate_blocks()
    yield first
    for _ in range(BOMB_INFLATED // _MIB - 1):
        yield repeated
    yield b"\x03\x00"  # an empty final fixed-Huffman block: the stream ends here


@cache
def gzip_bomb() -> bytes:
    """~1 MB of gzip that inflates to 1 GiB (a valid gzip file: CRC and size are right)."""
    crc = GIB_OF_ZEROS_CRC32  # zlib.crc32(bytes(1 << 30)), precomputed: 1 s saved a run
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, BOMB_INFLATED & 0xFFFFFFFF)
    return header + b"".join(_bomb_body()) + trailer


@cache
def deflate_bomb() -> bytes:
    """The same bomb as HTTP ``deflate`` (zlib-wrapped: header, raw deflate, Adler-32)."""
    adler = ((BOMB_INFLATED % 65521) << 16) | 1  # Adler-32 of n zero bytes
    return b"\x78\xda" + b"".join(_bomb_body()) + struct.pack(">I", adler)
