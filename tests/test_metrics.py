"""``metrics_file`` (issue #16, item 2): a real ``rssd run --once`` over loopback feeds
writes the Prometheus text file; prometheus_client's own parser reads it back, and its
counters must match what the run did (its fetch_job rows, its posts, its log)."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FeedServer, rss
from tests.test_daemon_output import every_line_json, rssd

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def read_metrics(path: Path) -> Samples:
    """Every sample in the file: (name, sorted labels) -> value, via the library's parser."""
    samples: Samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def files(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.rglob(pattern))


def rows(database: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(database)) as conn:
        return list(conn.execute(sql).fetchall())


async def test_the_metrics_file_counts_what_the_run_did(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    items = [{"title": f"t{n}", "guid": f"g{n}", "link": f"http://e.org/{n}"} for n in range(4)]
    urls = [
        feed_server.static("/a", rss(items), headers={"ETag": '"a1"'}),
        feed_server.static("/b", rss(items[:2])),
        feed_server.static("/broken", "no", status=500, content_type="text/plain"),
        feed_server.static("/gone", "bye", status=410, content_type="text/plain"),
    ]
    config = tmp_path / "config.toml"
    config.write_text(
        'database = "rssd.sqlite3"\nmetrics_file = "metrics/rssd.prom"\n'
        + "".join(f'[[feeds]]\nurl = "{url}"\n' for url in urls)
    )
    (tmp_path / "metrics").mkdir()
    prom = tmp_path / "metrics" / "rssd.prom"
    database = tmp_path / "rssd.sqlite3"

    code, out, err = await rssd("run", "--once", "-c", config)
    assert code == 0, err
    samples = read_metrics(prom)
    jobs = Counter(
        (str(status), str(code or ""))
        for status, code in rows(database, "SELECT status, error_code FROM fetch_job")
    )
    assert jobs == {("COMPLETED", ""): 2, ("FAILED", "http_error"): 1, ("FAILED", "gone"): 1}
    assert value(samples, "rssd_fetches_total", outcome="parsed", error_code="") == 2
    assert value(samples, "rssd_fetches_total", outcome="failed", error_code="http_error") == 1
    assert value(samples, "rssd_fetches_total", outcome="failed", error_code="gone") == 1
    assert total(samples, "rssd_fetches_total") == sum(jobs.values())
    assert value(samples, "rssd_fetch_duration_seconds_count") == 4
    (posts,) = rows(database, "SELECT count(*) FROM posts")[0]
    assert posts == 6
    assert value(samples, "rssd_posts_total", change="new") == posts
    assert value(samples, "rssd_database_bytes") > 0
    assert value(samples, "rssd_parse_worker_restarts_total") == 0
    assert value(samples, "rssd_parses_total", parser="feedparser_rs") == 2
    parsers = [
        e.get("parser") for e in every_line_json(out, err) if e["message"] == "fetch.completed"
    ]
    assert parsers == ["feedparser_rs", "feedparser_rs"]
    assert value(samples, "rssd_event_loop_lag_seconds_count") >= 0
    assert files(prom.parent, "*") == [prom], "the temporary file was renamed into place"

    # A second run (a new process: counters start again) sees the 304 and the unchanged.
    code, out, err = await rssd("run", "--once", "-c", config)
    assert code == 0, err
    events = every_line_json(out, err)
    samples = read_metrics(prom)
    outcomes = Counter(
        (e["outcome"], "") for e in events if e["message"] == "fetch.completed"
    ) + Counter(("failed", e["error_code"]) for e in events if e["message"] == "fetch.failed")
    for (outcome, error_code), count in outcomes.items():
        assert value(samples, "rssd_fetches_total", outcome=outcome, error_code=error_code) == (
            count
        )
    assert value(samples, "rssd_fetches_total", outcome="not_modified", error_code="") == 1
    assert total(samples, "rssd_fetches_total") == 4
    # The posts stored: the database's count, not this process's (it stored none).
    assert value(samples, "rssd_posts_stored") == posts
    assert ("rssd_posts_total", (("change", "new"),)) not in samples or (
        value(samples, "rssd_posts_total", change="new") == 0
    )


async def test_no_metrics_file_unless_asked(feed_server: FeedServer, tmp_path: Path) -> None:
    """Without metrics_file a run counts nothing: prometheus_client is not even imported
    (~10 ms of every start, which a run from a timer pays for nothing)."""
    url = feed_server.static("/a", rss([{"title": "t", "guid": "g"}]))
    config = tmp_path / "config.toml"
    config.write_text(f'database = "rssd.sqlite3"\n[[feeds]]\nurl = "{url}"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-X", "importtime", "-m", "rssd", "run", "--once", "-c", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert '"fetch.completed"' in out.decode()
    imported = [line.rsplit("|", 1)[-1].strip() for line in err.decode().splitlines()]
    assert "rssd.metrics" in imported
    assert not [name for name in imported if name.startswith("prometheus_client")]
    assert not files(tmp_path, "*.prom")
