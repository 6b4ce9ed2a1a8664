"""A changed feed has only its new and edited items parsed, end to end through the database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from rssd.daemon.pipeline import JobReport, Pipeline
from rssd.daemon.startup import daemon_session
from rssd.fetch.fetcher import Fetcher, Outcome
from rssd.fetch.items import RECORD_SIZE
from rssd.models.dto import FetchJobStatus
from rssd.repo.db import Database
from rssd.repo.seen import load_seen
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer, rss
from tests.support.config import make_config

pytestmark = pytest.mark.both_backends


def item(n: int, title: str | None = None) -> dict[str, str]:
    return {"guid": f"urn:post:{n}", "title": title or f"Post {n}", "description": f"<p>{n}</p>"}


async def titles(db: Database) -> dict[str, str]:
    rows = await db.fetchall("SELECT external_id, title FROM posts ORDER BY external_id")
    return {row["external_id"]: row["title"] for row in rows}


async def test_only_new_and_edited_items_are_parsed(
    feed_server: FeedServer, tmp_path: Path, db_target: Path | str
) -> None:
    document = {"body": rss([item(3), item(2), item(1)])}

    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=document["body"], content_type="application/rss+xml")

    url = feed_server.route("/feed", serve)
    config = make_config(tmp_path, [url], database=str(db_target))
    async with asyncio.timeout(240), daemon_session(config) as db:  # a hang guard
        (source,) = await SourceRepo(db).list()
        async with Fetcher(config) as fetcher:
            pipeline = Pipeline(db, fetcher)

            async def fetch(body: str) -> JobReport:
                document["body"] = body
                report = await pipeline.run(source)
                assert report.status is FetchJobStatus.COMPLETED, report.error_message
                assert report.result is not None
                return report

            first = await fetch(rss([item(3), item(2), item(1)]))
            assert first.result is not None
            assert (first.posts_new, first.result.items_skipped) == (3, 0)
            assert len(await load_seen(db, source.id)) == 3 * RECORD_SIZE

            gained = await fetch(rss([item(4), item(3), item(2), item(1)]))
            assert gained.result is not None
            assert gained.result.outcome is Outcome.PARSED
            assert (gained.posts_new, gained.posts_updated, gained.result.items_skipped) == (
                1,
                0,
                3,
            )

            edited = await fetch(rss([item(4), item(3), item(2, "Post 2, fixed"), item(1)]))
            assert edited.result is not None
            assert (edited.posts_new, edited.posts_updated, edited.result.items_skipped) == (
                0,
                1,
                3,
            )

            # The oldest item drops out: the entries changed, but no item is new.
            dropped = await fetch(rss([item(4), item(3), item(2, "Post 2, fixed")]))
            assert dropped.result is not None
            assert dropped.result.outcome is Outcome.UNCHANGED
            assert dropped.result.items_skipped == 3
            assert len(await load_seen(db, source.id)) == 3 * RECORD_SIZE

            # A failed parse leaves the fingerprints as they were.
            document["body"] = "<html><body>maintenance</body></html>"
            failed = await pipeline.run(source)
            assert failed.status is FetchJobStatus.FAILED
            assert len(await load_seen(db, source.id)) == 3 * RECORD_SIZE

            again = await fetch(rss([item(5), item(4), item(3), item(2, "Post 2, fixed")]))
            assert again.result is not None
            assert (again.posts_new, again.result.items_skipped) == (1, 3)

        assert await titles(db) == {
            "urn:post:1": "Post 1",
            "urn:post:2": "Post 2, fixed",
            "urn:post:3": "Post 3",
            "urn:post:4": "Post 4",
            "urn:post:5": "Post 5",
        }
