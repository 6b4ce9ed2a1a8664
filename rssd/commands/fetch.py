"""``rssd fetch FEED...``: fetch now, through the daemon's own pipeline, beside the daemon.

Same Pipeline, so the same guards: the one-active-job index refuses a feed the daemon (or
another ``rssd fetch``) is fetching at this moment, and posts and the COMPLETED mark are
written in one transaction. No daemon lock and no crash recovery here: a running daemon
owns both, and "recovering" its in-flight jobs would fail fetches that are fine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from rssd import logs
from rssd.commands.context import load, writer
from rssd.commands.errors import CommandError
from rssd.commands.feeds import removed_from_config, resolve
from rssd.commands.terminal import safe_text
from rssd.daemon.pipeline import JobReport, Pipeline
from rssd.exits import EXIT_BUSY, EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from rssd.fetch.fetcher import Fetcher, Outcome
from rssd.models.config import Config
from rssd.models.dto import FetchJobStatus, Source
from rssd.models.redact import redact
from rssd.repo.db import Database
from rssd.repo.sources import SourceRepo


def describe(source: Source, report: JobReport) -> str:
    """One line per feed: what happened, in the words an operator would use (made safe
    for a terminal: the error message quotes the server)."""
    return safe_text(_describe(source, report))


def _describe(source: Source, report: JobReport) -> str:
    label = f"{redact(source.url)} (id {source.id})"
    if report.skipped:
        return (
            f"{label}: refused: this feed is being fetched right now (by the daemon or "
            f"another rssd fetch); its result will be in `rssd status`"
        )
    timing = f"{report.duration_ms} ms"
    if report.status is FetchJobStatus.COMPLETED:
        outcome = report.result.outcome if report.result else None
        if outcome is Outcome.NOT_MODIFIED:
            return f"{label}: ok, 304 not modified, {timing}"
        if outcome is Outcome.UNCHANGED:
            return f"{label}: ok, HTTP {report.http_status}, unchanged since last time, {timing}"
        return (
            f"{label}: ok, HTTP {report.http_status}, {report.posts_new} new and "
            f"{report.posts_updated} updated posts, {timing}"
        )
    code = report.error_code.value if report.error_code else "failed"
    status = f" (HTTP {report.http_status})" if report.http_status else ""
    detail = f": {report.error_message}" if report.error_message else ""
    job = f"job {report.job_id}" if report.job_id else "no job"
    return f"{label}: failed, {code}{status}{detail} [{job}, {timing}]"


def exit_code(reports: list[JobReport]) -> int:
    """1 if any fetch failed, else 3 if any was refused as busy, else 0."""
    if any(not r.skipped and r.status is not FetchJobStatus.COMPLETED for r in reports):
        return EXIT_FAILURE
    if any(r.skipped for r in reports):
        return EXIT_BUSY
    return EXIT_OK


async def _chosen(db: Database, config: Config, feeds: list[str], every: bool) -> list[Source]:
    """The sources to fetch: every enabled one (``--all``), or each FEED resolved first, so
    a typo fetches nothing; a feed removed from config.toml is refused, saying so."""
    if every:
        return await SourceRepo(db).list(enabled_only=True)
    sources: dict[int, Source] = {}
    for feed in feeds:
        source = await resolve(db, lambda: config, feed)
        if not source.enabled and removed_from_config(source, config):
            raise CommandError(
                f"{redact(source.url)} (id {source.id}) was removed from config.toml: it is "
                f"disabled and not fetched (its posts are kept); add it back to fetch it",
                EXIT_USAGE,
            )
        sources.setdefault(source.id, source)
    return list(sources.values())


async def fetch(path: Path, feeds: list[str], *, every: bool = False) -> list[JobReport]:
    """Fetch the chosen sources, at most 2 x max_concurrency at a time (the daemon's
    launch limit), printing each result as it comes."""
    config = load(path)
    async with writer(config) as db:
        pending = deque(await _chosen(db, config, feeds, every))
        async with Fetcher(config) as fetcher:
            pipeline = Pipeline(db, fetcher)
            done: list[JobReport] = []

            async def worker() -> None:
                while pending:
                    source = pending.popleft()
                    report = await pipeline.run(source)
                    done.append(report)
                    print(describe(source, report), flush=True)

            count = min(len(pending), 2 * config.max_concurrency)
            tasks = [asyncio.create_task(worker()) for _ in range(count)]
            try:
                with _cancel_on_sigterm(tasks):
                    results = await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                # Whatever ends this (Ctrl-C, a closed stdout), every fetch records its
                # outcome before the database closes: none is left ONGOING.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await pipeline.settle()
    for result in results:
        if isinstance(result, BaseException):
            raise result  # e.g. BrokenPipeError from print, CancelledError from SIGTERM
    return done


@contextlib.contextmanager
def _cancel_on_sigterm(tasks: list[asyncio.Task[None]]) -> Iterator[None]:
    """SIGTERM cancels the fetches, which record themselves ``interrupted``, instead of
    leaving their jobs ONGOING (Ctrl-C does the same through asyncio.run)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread (tests call us in one)
        return
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for task in tasks:
            task.cancel()

    loop.add_signal_handler(signal.SIGTERM, stop)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(path: Path, feeds: list[str], *, every: bool = False) -> int:
    # The pipeline logs every fetch; here the printed lines say it, so only errors (an
    # unrecorded job, an internal failure with its traceback) reach stderr as JSON.
    logs.configure("error", stream=sys.stderr)
    try:
        reports = asyncio.run(fetch(path, feeds, every=every))
    except asyncio.CancelledError:
        print("rssd fetch: stopped; unfinished fetches recorded as interrupted", file=sys.stderr)
        return 128 + signal.SIGTERM.value
    return exit_code(reports)


def cli(path: Path, args: argparse.Namespace) -> int:
    """``rssd`` with this command's parsed arguments (rssd/cli.py's registry)."""
    return main(path, args.feeds, every=args.all)
