"""``rssd prune``: apply the retention settings now, and VACUUM if asked.

Fetch jobs go through FetchJobRepo.prune, the daemon's hourly housekeeping, so the same
ones are kept (each source's latest job and latest successful one); posts go when older
than ``keep_posts_days``, if set. Deletes run in small batches beside a running daemon.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta
from pathlib import Path

from msgspec import Struct

from rssd.clock import parse_iso, to_iso
from rssd.commands.context import load, writer
from rssd.exits import EXIT_OK
from rssd.models.config import Config
from rssd.repo.jobs import FetchJobRepo
from rssd.repo.maintenance import vacuum
from rssd.repo.posts import PostRepo


class PruneReport(Struct, frozen=True):
    jobs: int
    jobs_before: str
    posts: int | None  # None: keep_posts_days is not set
    posts_before: str | None
    size_before: int | None = None  # bytes, when vacuumed
    size_after: int | None = None


async def prune(config: Config, *, dry_run: bool, vacuum_after: bool) -> PruneReport:
    async with writer(config) as db:
        now = await db.now()  # the database's clock where several machines share it
        jobs_before = to_iso(now - timedelta(days=config.keep_fetch_jobs_days))
        posts_before = (
            to_iso(now - timedelta(days=config.keep_posts_days)) if config.keep_posts_days else None
        )
        posts_repo, jobs_repo = PostRepo(db), FetchJobRepo(db)
        if dry_run:
            jobs = await jobs_repo.count_prunable(jobs_before)
            posts = await posts_repo.count_prunable(posts_before) if posts_before else None
            return PruneReport(jobs, jobs_before, posts, posts_before)
        jobs = await jobs_repo.prune(jobs_before)
        posts = await posts_repo.prune(posts_before) if posts_before else None
        if not vacuum_after:
            return PruneReport(jobs, jobs_before, posts, posts_before)
        size_before = await db.size_bytes()
        await vacuum(db)
        size_after = await db.size_bytes()
    return PruneReport(jobs, jobs_before, posts, posts_before, size_before, size_after)


def size_text(size: int) -> str:
    """'84 KB', '12.3 MB', '1.2 GB'."""
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    if size < 1024**3:
        return f"{size / 1024**2:.1f} MB"
    return f"{size / 1024**3:.1f} GB"


def _day(iso: str) -> str:
    """'2026-08-31 02:35 UTC': the cutoff to the minute, readable."""
    return parse_iso(iso).strftime("%Y-%m-%d %H:%M UTC")


def render(report: PruneReport, config: Config, *, dry_run: bool, vacuum_asked: bool) -> str:
    verb = "would remove" if dry_run else "removed"
    lines = [
        f"fetch jobs: {verb} {report.jobs} that ended before {_day(report.jobs_before)} "
        f"(keep_fetch_jobs_days = {config.keep_fetch_jobs_days})",
        f"posts:      {verb} {report.posts} older than {_day(report.posts_before)} "
        f"(keep_posts_days = {config.keep_posts_days})"
        if report.posts is not None and report.posts_before is not None
        else "posts:      kept: keep_posts_days is not set",
    ]
    if vacuum_asked:
        if dry_run:
            lines.append("vacuum:     not run (--dry-run)")
        elif report.size_before is not None and report.size_after is not None:
            lines.append(
                f"vacuum:     {size_text(report.size_before)} -> {size_text(report.size_after)}"
            )
    return "\n".join(lines)


def main(path: Path, *, dry_run: bool, vacuum_after: bool) -> int:
    config = load(path)
    report = asyncio.run(prune(config, dry_run=dry_run, vacuum_after=vacuum_after))
    print(render(report, config, dry_run=dry_run, vacuum_asked=vacuum_after))
    return EXIT_OK


def cli(path: Path, args: argparse.Namespace) -> int:
    """``rssd`` with this command's parsed arguments (rssd/cli.py's registry)."""
    return main(path, dry_run=args.dry_run, vacuum_after=args.vacuum)
