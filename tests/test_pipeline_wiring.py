"""The wiring of one fetch (rssd.daemon.pipeline, rssd.fetch.fetcher) as ``rssd run --once``
and ``rssd fetch`` use it: the sanitizer reaches the stored HTML, and an active job left
behind long ago no longer blocks its source. The parts themselves are tested alone
elsewhere (test_sanitize.py, test_repo_jobs.py); these fail if the pipeline stops using
them."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from rssd.clock import to_iso, utcnow
from rssd.daemon import manual as manual_module
from rssd.daemon.pipeline import STALE_JOB_AFTER, Pipeline
from rssd.daemon.startup import daemon_session
from rssd.fetch.fetcher import Fetcher
from rssd.models.config import load_config
from rssd.models.dto import FetchJobStatus
from rssd.repo.claims import ClaimRepo
from rssd.repo.open import open_database
from rssd.repo.sources import SourceRepo
from tests.conftest import FeedServer, rss
from tests.support.commands import cli
from tests.support.config import write_config
from tests.support.jobs import ongoing_job
from tests.support.process import run_rssd

HOSTILE_HTML = (
    '<p onclick="steal()">Hello <a href="javascript:steal()">there</a></p>'
    "<script>steal()</script><iframe src='http://evil.example/'></iframe>"
    '<img src="/pics/1.png">'
)
HOSTILE_FEED = rss(
    [{"title": "hostile", "guid": "urn:hostile", "description": f"<![CDATA[{HOSTILE_HTML}]]>"}]
)


def stored_summary(database: Path) -> str:
    with closing(sqlite3.connect(database)) as db:
        ((summary,),) = db.execute("SELECT summary FROM posts").fetchall()
    assert isinstance(summary, str)
    return summary


@pytest.mark.slow
@pytest.mark.parametrize("sanitize", [True, False], ids=["sanitize_html", "no_sanitize_html"])
async def test_stored_html_is_sanitized_as_configured(
    feed_server: FeedServer, tmp_path: Path, sanitize: bool
) -> None:
    """``rssd run --once``, parse workers and all: with sanitize_html (the default) the
    stored summary has nothing a browser would run and its relative link resolved; with
    it off, the feed's HTML is stored as it came."""
    url = feed_server.static("/feed", HOSTILE_FEED)
    config = write_config(tmp_path / "config.toml", [url], sanitize_html=sanitize)
    finished = await run_rssd("run", "--once", "-c", config)
    assert finished.returncode == 0, finished.stderr
    summary = stored_summary(tmp_path / "rssd.sqlite3")
    if sanitize:
        for executable in ("<script", "steal()", "onclick", "javascript:", "<iframe"):
            assert executable not in summary, summary
        assert "Hello" in summary and "there" in summary
        assert f'src="{feed_server.url("/pics/1.png")}"' in summary, summary
    else:
        assert summary == HOSTILE_HTML


async def active_job_queued(config: Path, ago: timedelta) -> int:
    """The config's feed synced, with a job ONGOING since ``ago`` under no lease: what a
    write that failed twice at the worst moment leaves behind (no daemon runs: no start-up
    recovery, no lease to expire). A QUEUED job is the schedule: ``rssd fetch`` takes it."""
    loaded = load_config(config)
    db = await open_database(loaded.database)
    try:
        await SourceRepo(db).sync(loaded)
        (source,) = await SourceRepo(db).list()
        job = await ongoing_job(db, source.id)
    finally:
        await db.close()
    with closing(sqlite3.connect(loaded.database)) as raw, raw:
        raw.execute(  # its lease gone with the process that claimed it
            "UPDATE fetch_job SET queued_at = :at, started_at = :at, claimed_by = NULL, "
            "lease_expires_at = NULL WHERE id = :id",
            {"at": to_iso(utcnow() - ago), "id": job.id},
        )
    return job.id


async def test_an_active_job_older_than_any_fetch_is_failed_and_the_source_fetched(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """Pipeline._claim: a job ONGOING for more than STALE_JOB_AFTER under no lease cannot
    still be running; it is failed (``internal``, says stale) and the fetch goes ahead."""
    url = feed_server.static("/feed", rss([{"title": "t", "guid": "urn:1"}]))
    config = write_config(tmp_path / "config.toml", [url])
    stale = await active_job_queued(config, STALE_JOB_AFTER + timedelta(minutes=5))
    fetched = await cli("fetch", "-c", config, "1")
    assert fetched.code == 0, fetched.out + fetched.err
    with closing(sqlite3.connect(tmp_path / "rssd.sqlite3")) as db:
        jobs = db.execute("SELECT id, status, error_code, error_message FROM fetch_job").fetchall()
    assert len(jobs) == 2, jobs
    (job_id, status, code, message), (_, new_status, _, _) = jobs
    assert (job_id, status, code) == (stale, "FAILED", "internal")
    assert "stale" in message
    assert new_status == "COMPLETED"


async def test_an_active_job_younger_than_that_still_refuses_a_second_fetch(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    """The other side of the cut: a recent active job may be a fetch in progress."""
    url = feed_server.static("/feed", rss([{"title": "t", "guid": "urn:1"}]))
    config = write_config(tmp_path / "config.toml", [url])
    await active_job_queued(config, STALE_JOB_AFTER - timedelta(minutes=5))
    refused = await cli("fetch", "-c", config, "1")
    assert refused.code == 3, refused.out + refused.err
    assert feed_server.hits.get("/feed") is None


async def test_a_fetch_run_by_hand_keeps_its_lease_while_it_runs(
    feed_server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rssd fetch`` and ``run --once`` renew their leases themselves (one renewer for
    all the pipeline's fetches): a slow fetch's lease moves on while it runs, so no daemon
    takes the job back, and the renewer stops when the last fetch ends."""
    monkeypatch.setattr(manual_module, "RENEW_SECONDS", 0.2)
    url, answer = feed_server.held("/slow")
    config = load_config(write_config(tmp_path / "config.toml", [url]))
    async with asyncio.timeout(60), daemon_session(config) as db:
        (source,) = await SourceRepo(db).list()
        async with Fetcher(config) as fetcher:
            pipeline = Pipeline(db, fetcher)
            running = asyncio.create_task(pipeline.run(source))
            leases: list[str] = []
            while len(set(leases)) < 3:  # renewed twice after the claim wrote the first
                row = await db.fetchone(
                    "SELECT lease_expires_at FROM fetch_job WHERE status = 'ONGOING'"
                )
                if row is not None:
                    leases.append(row[0])
                await asyncio.sleep(0.05)
            assert leases == sorted(leases)
            answer.set()
            report = await running
            assert report.status is FetchJobStatus.COMPLETED
            assert pipeline.manual is not None
            renewer = pipeline.manual.renewer  # the one task: it ends with the last fetch
            assert renewer is not None
            await asyncio.gather(renewer, return_exceptions=True)  # hangs (60 s) if it runs on
            assert renewer.cancelled() or renewer.exception() is None


async def test_an_rss_ttl_reaches_the_schedule(feed_server: FeedServer, tmp_path: Path) -> None:
    """``<ttl>180</ttl>`` on a feed fetched every 60 minutes: the daemon's next job for it is
    due after the ttl (180 min less the 10% jitter), not after the interval (at most 66)."""
    body = rss([{"title": "t", "guid": "urn:1"}]).replace(
        "<description>", "<ttl>180</ttl><description>", 1
    )
    url = feed_server.static("/feed", body)
    config = load_config(
        write_config(tmp_path / "config.toml", [{"url": url, "interval_minutes": 60}])
    )
    async with asyncio.timeout(60), daemon_session(config) as db:
        (source,) = await SourceRepo(db).list()
        claims = ClaimRepo(db, "d1")
        await claims.queue_missing({source.id: to_iso(utcnow() - timedelta(minutes=1))})
        (claim,) = await claims.claim_due(1, 1)
        async with Fetcher(config) as fetcher:
            report = await Pipeline(db, fetcher, claims).run_claim(claim)
    assert report.status is FetchJobStatus.COMPLETED
    assert report.result is not None and report.result.ttl_minutes == 180
    with closing(sqlite3.connect(tmp_path / "rssd.sqlite3")) as raw:
        ((not_before,),) = raw.execute(
            "SELECT not_before FROM fetch_job WHERE status = 'QUEUED'"
        ).fetchall()
    assert not_before > to_iso(utcnow() + timedelta(minutes=150)), not_before
