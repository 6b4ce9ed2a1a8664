"""Politeness measured from the publisher's side: 30 days of synthetic publishing, replayed
on a virtual clock against four polling policies (issue 24).

    .venv/bin/python bench/politeness.py            # 10,000 feeds, 30 days: one table
    .venv/bin/python bench/politeness.py --json     # one JSON object per line, per policy
    .venv/bin/python bench/politeness.py --feeds 2000 --days 10 --seed 2
    .venv/bin/python bench/politeness.py --policy rssd --by-class --late-minutes 51.5

No network, no database: every feed's publications are drawn first (the same for every
policy), then each policy polls them. rssd's policy goes through the daemon's own pure
functions (``rssd.daemon.schedule``: ``policy_of`` over an ``Activity``, whose posts
per hour of the day give its quiet hours, then ``next_due``) and keeps a host's gap
and pause as ``rssd.repo.hosts`` does. The others are written here from their projects'
documented formulas:

- ``fixed-60``: rssd before adaptive polling, every 60 minutes +-10%, backoff after
  failures, Retry-After obeyed per feed (the same functions, a fixed policy);
- ``miniflux``: the entry_frequency scheduler: ``round(10080 / weekly_count)`` minutes,
  weekly_count from the entries of the last 7 days (``ceil(604800 / (span / (n - 1)))``,
  0 below two entries), clamped to [5, 1440]; the largest of that and a Retry-After
  (charitably: no batching, each feed polled when due);
- ``commafeed``: the empirical interval: 4 h (the max) for a feed silent 30 days, 2 h for
  14, 1 h for 7, else half the average gap between its entries, clamped to [5 min, 1 h];
  after errors a 1 h step per error beyond the third; on a 429 the longer of that and
  Retry-After.

The population (``--feeds``, shares from the issue): 5% post several times an hour (2 to 8),
20% daily (1 to 3 a day), 40% weekly (1 to 3 a week), 25% monthly (1 to 3 a month), 10%
dead (last post 2 to 12 months ago). Posting is bursty: bursts arrive as a Poisson process,
each of 1 to 4 posts a few minutes apart, and only in the publisher's waking hours (16 of
24, at a random offset per feed). Five hosts carry 300 feeds each; three of them answer 429
(with ``Retry-After: 60``) to a request started less than a second after the previous one
to that host; every other feed has a host of its own. A feed document lists its newest 50
posts with their dates, so a first fetch sees the feed's recent history. Conditional
requests always work: a poll with no new post is a 304.

Measured from day 0 to ``--days`` (a day of warm-up before; posts of the window are
followed for one more day): requests per day; requests per new item; the share of 304s;
the median and 95th percentile delay from publication to the first fetch that saw the
post, over every new post (one that fell off the document unseen counts as later than
all); the most requests any host got in one minute; 429s received, and 429s after the
host's first one.

``--by-class`` says where the delays come from: per kind of feed (fast, daily, weekly,
monthly, dead) and per kind of host (its own, shared, shared and answering 429s), the
requests, the median and p95 delay, and the posts later than ``--late-minutes`` (default:
the policy's own p95), each counted under what made it late (``CAUSES``).
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from msgspec.structs import replace

import rssd.daemon.schedule
from rssd.daemon.schedule import (
    Activity,
    Hints,
    History,
    Policy,
    Reason,
    jittered,
    next_due,
    planned_delay,
    policy_of,
)
from rssd.models.config import Config
from rssd.models.dto import Source

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
#: The share of each kind of feed, and its posts per day (low, high).
KINDS = (
    ("fast", 0.05, (2 * 24.0, 8 * 24.0)),
    ("daily", 0.20, (1.0, 3.0)),
    ("weekly", 0.40, (1 / 7, 3 / 7)),
    ("monthly", 0.25, (1 / 30, 3 / 30)),
    ("dead", 0.10, (0.0, 0.0)),
)
BIG_HOSTS, FEEDS_PER_BIG_HOST, LIMITED_HOSTS = 5, 300, 3
RETRY_AFTER = 60.0
DOCUMENT = 50  # posts a feed document lists
AWAKE = 16 / 24  # the share of the day a publisher posts in
WARM_UP = DAY
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)

_DEFAULTS = Config()
START = _DEFAULTS.interval_minutes * MINUTE
GAP = _DEFAULTS.host_min_gap_seconds
#: Every simulated feed as config.toml would make it with the defaults: adaptive, between
#: the default min and max interval (``policy_of`` reads these).
SOURCE = Source(
    0, "http://feed.example/", None, _DEFAULTS.interval_minutes, 30.0, True, "", "",
    min_interval_minutes=_DEFAULTS.min_interval_minutes,
    max_interval_minutes=_DEFAULTS.max_interval_minutes,
)  # fmt: skip


@dataclass
class Feed:
    host: int
    posts: list[float]  # publication times, sorted
    kind: str = "dead"  # its row of KINDS


def awake(t: float, offset: float) -> bool:
    return ((t + offset) % DAY) < AWAKE * DAY


def publications(rng: random.Random, per_day: float, start: float, end: float) -> list[float]:
    """Bursty posting in waking hours: bursts as a Poisson process (at the rate that gives
    ``per_day`` posts), each of 1 to 4 posts 1 to 10 minutes apart."""
    if per_day <= 0:
        return []
    offset = rng.uniform(0, DAY)
    per_burst = 2.5
    rate = per_day / per_burst / (AWAKE * DAY)  # bursts per waking second
    out: list[float] = []
    t = start
    while True:
        t += rng.expovariate(rate)
        while not awake(t, offset):  # asleep: the clock runs, nobody posts
            t += HOUR * rng.random()
        if t >= end:
            return out
        at = t
        for _ in range(rng.randint(1, 4)):
            out.append(at)
            at += rng.uniform(MINUTE, 10 * MINUTE)


def population(feeds: int, days: float, seed: int) -> list[Feed]:
    rng = random.Random(seed)
    history_from = -90 * DAY
    end = days * DAY + DAY
    out: list[Feed] = []
    big = BIG_HOSTS * FEEDS_PER_BIG_HOST if feeds >= 2 * BIG_HOSTS * FEEDS_PER_BIG_HOST else 0
    for index in range(feeds):
        roll, kind, kind_rate = rng.random(), KINDS[-1][0], None
        for name, share, rates in KINDS:
            if roll < share:
                kind, kind_rate = name, rates
                break
            roll -= share
        low, high = kind_rate or KINDS[-1][2]
        if high == 0:  # dead: a little history, long ago
            last = -rng.uniform(60 * DAY, 365 * DAY)
            posts = sorted(last - rng.uniform(0, 60 * DAY) for _ in range(rng.randint(2, 20)))
        else:
            posts = publications(rng, rng.uniform(low, high), history_from, end)
        host = index % BIG_HOSTS if index < big else BIG_HOSTS + index
        out.append(Feed(host, posts, kind))
    return out


@dataclass
class State:
    """What a poller knows of one feed."""

    due: float
    seen: int = 0  # posts[:seen] were in a document it fetched
    failures: int = 0
    errors: int = 0  # CommaFeed counts errors its own way
    interval: float = START
    planned: float = 0.0  # the due time its planner gave, before any host hold
    stretched: bool = False  # rssd: the silence rule lengthened the interval planned
    held_by: str = ""  # what held the poll back last: "host gap" or "host pause"
    quieted: bool = False  # rssd: the poll was planned at the end of the quiet hours
    hours: list[int] = field(default_factory=lambda: [0] * 24)  # rssd: window_hours
    hours_first: int = 0
    hours_seen: int = 0


# --- the policies ---------------------------------------------------------------------------
# Each gets (feed, state, now, outcome) with outcome "ok" or "429" and returns the next due
# time; it may keep what it likes in ``state``.

Planner = Callable[[Feed, State, float, str, random.Random], float]


def _dt(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def fixed_60(feed: Feed, state: State, now: float, outcome: str, rng: random.Random) -> float:
    policy = Policy(interval=timedelta(minutes=60))
    if outcome == "ok":
        return now + jittered(policy.interval, Reason.FIXED, rng.random()).total_seconds()
    hints = Hints(http_status=429, headers={"Retry-After": str(int(RETRY_AFTER))})
    due = next_due(History(_dt(now), state.failures), policy, _dt(now), rng.random(), hints)
    assert due is not None
    return (due - EPOCH).total_seconds()


def miniflux(feed: Feed, state: State, now: float, outcome: str, rng: random.Random) -> float:
    low, high = 5 * MINUTE, 1440 * MINUTE
    posts, seen = feed.posts, state.seen  # posts[:seen]: what it knows (never copied)
    first = bisect.bisect_right(posts, now - 7 * DAY, 0, seen)
    n = seen - first
    weekly = 0
    if n >= 2:
        span = posts[seen - 1] - posts[first]
        weekly = math.ceil(7 * DAY / (span / (n - 1))) if span > 0 else 10080
    interval = high if weekly == 0 else min(max(round(10080 / weekly) * MINUTE, low), high)
    if outcome == "429":
        interval = min(max(interval, RETRY_AFTER), high)
    return now + interval


def commafeed(feed: Feed, state: State, now: float, outcome: str, rng: random.Random) -> float:
    low, high = 5 * MINUTE, 4 * HOUR
    if outcome == "429":
        backoff = HOUR * (state.errors - 3 + 1)
        return now + max(RETRY_AFTER, backoff)
    posts, seen = feed.posts, state.seen
    silent = now - posts[seen - 1] if seen else math.inf
    if silent >= 30 * DAY:
        interval = high
    elif silent >= 14 * DAY:
        interval = high / 2
    elif silent >= 7 * DAY:
        interval = high / 4
    else:
        oldest = max(0, seen - DOCUMENT)  # the entries of its document
        count = seen - oldest
        average = (posts[seen - 1] - posts[oldest]) / (count - 1) if count > 1 else high
        interval = min(max(average / 2, low), high / 4)
    return now + interval


def window_hours(feed: Feed, state: State, first: int) -> tuple[int, ...]:
    """The posts of ``feed.posts[first:state.seen]`` (the rate window's) per UTC hour of
    the day, kept up to date as posts enter and leave the window (not recounted per poll)."""
    posts, seen, hours = feed.posts, state.seen, state.hours
    if first >= state.hours_seen:  # nothing counted is still in the window: count afresh
        hours[:] = [0] * 24
        state.hours_first = state.hours_seen = first
    for p in posts[state.hours_first : first]:
        hours[int(p % DAY // HOUR)] -= 1
    for p in posts[state.hours_seen : seen]:
        hours[int(p % DAY // HOUR)] += 1
    state.hours_first, state.hours_seen = first, seen
    return tuple(hours)


def rssd_policy(feed: Feed, state: State, now: float, outcome: str, rng: random.Random) -> float:
    posts, seen = feed.posts, state.seen
    first = bisect.bisect_right(posts, now - 30 * DAY, 0, seen)
    n = seen - first
    activity = Activity(
        posts=n,
        span=timedelta(seconds=posts[seen - 1] - posts[first]) if n else timedelta(0),
        silence=timedelta(seconds=now - posts[seen - 1]) if n else None,
        known=timedelta(seconds=now + 90 * DAY),  # configured long before the run
        hours=window_hours(feed, state, first),  # every post here has its date
    )
    policy = policy_of(SOURCE, activity)
    # For --by-class: would the feed be polled sooner if its silence did not count?
    state.stretched = policy.interval > policy_of(SOURCE, replace(activity, silence=None)).interval
    hints = None
    if outcome != "ok":
        hints = Hints(http_status=429, headers={"Retry-After": str(int(RETRY_AFTER))})
    history = History(_dt(now), state.failures)
    state.quieted = planned_delay(history, policy, _dt(now), hints)[1] is Reason.QUIET_HOURS
    due = next_due(history, policy, _dt(now), rng.random(), hints)
    assert due is not None
    return (due - EPOCH).total_seconds()


POLICIES: dict[str, tuple[Planner, bool]] = {
    # name: (planner, keeps host politeness: the gap between starts and the host pause)
    "fixed-60": (fixed_60, False),
    "miniflux": (miniflux, False),
    "commafeed": (commafeed, False),
    "rssd": (rssd_policy, True),
}


# --- the replay ---------------------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0
    not_modified: int = 0
    http_429: int = 0
    http_429_after_first: int = 0
    held: int = 0
    missed: int = 0
    delays: list[float] = field(default_factory=list)
    max_host_minute: int = 0
    # For --by-class, one entry per delay: the feed's index and the cause (CAUSES).
    delay_feeds: list[int] = field(default_factory=list)
    delay_causes: list[str] = field(default_factory=list)
    missed_feeds: list[int] = field(default_factory=list)
    feed_requests: dict[int, int] = field(default_factory=dict)


#: What made a post as late as it was (--by-class), the first that applies: the poll that
#: saw it waited mostly (more than half its delay) for the host's gap or pause; it was the
#: retry after a 429; it waited for the end of the feed's quiet hours (rssd); the interval
#: planned was lengthened by rssd's silence rule; or the interval itself. "missed": it fell
#: off the document before any poll saw it.
CAUSES = ("interval", "silence", "quiet hours", "after 429", "host gap", "host pause", "missed")


def cause_of(state: State, now: float, published: float) -> str:
    if state.held_by and now - max(state.planned, published) > (now - published) / 2:
        return state.held_by
    if state.failures:
        return "after 429"
    if state.quieted:
        return "quiet hours"
    return "silence" if state.stretched else "interval"


def replay(
    feeds: list[Feed],
    days: float,
    planner: Planner,
    polite: bool,
    seed: int,
    *,
    detail: bool = False,
) -> Tally:
    """Every host's feeds polled in time order (hosts are independent of one another);
    with ``detail``, each delay's feed and cause too (--by-class)."""
    rng = random.Random(seed)
    tally = Tally()
    window, stop = days * DAY, days * DAY + DAY
    by_host: dict[int, list[int]] = {}
    for index, feed in enumerate(feeds):
        by_host.setdefault(feed.host, []).append(index)
    for host, members in by_host.items():
        limited = host < LIMITED_HOSTS and len(members) > 1
        states = {i: State(due=-WARM_UP + rng.uniform(0, START)) for i in members}
        queue = [(states[i].due, i) for i in members]
        heapq.heapify(queue)
        last_start, next_start, paused_until, had_429 = -math.inf, -math.inf, -math.inf, False
        minute, in_minute = -1, 0
        while queue:
            now, index = heapq.heappop(queue)
            if now >= stop:
                continue
            feed, state = feeds[index], states[index]
            if polite and now < max(next_start, paused_until):  # wait for the host's turn
                tally.held += now >= 0
                state.held_by = "host pause" if paused_until >= next_start else "host gap"
                heapq.heappush(queue, (max(next_start, paused_until), index))
                continue
            counted = 0 <= now < window
            if counted:
                tally.requests += 1
                if detail:
                    tally.feed_requests[index] = tally.feed_requests.get(index, 0) + 1
                this_minute = int(now // MINUTE)
                if this_minute != minute:
                    minute, in_minute = this_minute, 0
                in_minute += 1
                tally.max_host_minute = max(tally.max_host_minute, in_minute)
            too_soon = limited and now - last_start < 1.0
            last_start, next_start = now, now + GAP
            if too_soon:
                if counted:
                    tally.http_429 += 1
                    tally.http_429_after_first += had_429
                had_429 = True
                state.failures += 1
                state.errors += 1
                if polite:
                    paused_until = now + RETRY_AFTER
                state.planned, state.held_by = planner(feed, state, now, "429", rng), ""
                heapq.heappush(queue, (state.planned, index))
                continue
            posts = feed.posts
            visible = bisect.bisect_right(posts, now)
            listed = max(0, visible - DOCUMENT)
            if listed > state.seen:  # fell off the document before anyone looked
                lost = sum(1 for p in posts[state.seen : listed] if 0 <= p < window)
                tally.missed += lost
                if detail:
                    tally.missed_feeds.extend([index] * lost)
            fresh = posts[max(state.seen, listed) : visible]
            if counted and not fresh:
                tally.not_modified += 1
            tally.delays.extend(now - p for p in fresh if 0 <= p < window)
            if detail:
                for p in fresh:
                    if 0 <= p < window:
                        tally.delay_feeds.append(index)
                        tally.delay_causes.append(cause_of(state, now, p))
            state.seen = visible
            state.failures = state.errors = 0
            state.planned, state.held_by = planner(feed, state, now, "ok", rng), ""
            heapq.heappush(queue, (state.planned, index))
    return tally


def percentile(delays: list[float], items: int, share: float) -> float | None:
    """The ``share`` percentile of ``items`` posts, ``delays`` (sorted) those fetched: the
    others (missed) are later than all of them (None: the percentile is one of those)."""
    k = int(share * items)
    return delays[k] if k < len(delays) else None


def summary(
    name: str, feeds: list[Feed], days: float, tally: Tally, seconds: float
) -> dict[str, object]:
    new_items = sum(1 for feed in feeds for p in feed.posts if 0 <= p < days * DAY)
    delays = sorted(tally.delays)
    # Over every new item: one never fetched (it fell off the document during a backoff)
    # is later than any fetched one, not left out (None: the percentile is such a post).
    median, p95 = (percentile(delays, new_items, share) for share in (0.5, 0.95))
    return {
        "policy": name,
        "feeds": len(feeds),
        "days": days,
        "requests_per_day": round(tally.requests / days),
        "new_items": new_items,
        "items_fetched": len(delays),
        "items_missed": tally.missed,
        "requests_per_new_item": round(tally.requests / new_items, 2) if new_items else None,
        "share_304": round(tally.not_modified / tally.requests, 3) if tally.requests else None,
        "median_delay_minutes": round(median / MINUTE, 1) if median is not None else None,
        "p95_delay_minutes": round(p95 / MINUTE, 1) if p95 is not None else None,
        "max_host_requests_per_minute": tally.max_host_minute,
        "http_429": tally.http_429,
        "http_429_after_first": tally.http_429_after_first,
        "held_by_host_gap": tally.held,
        "seconds": round(seconds, 1),
        "pivot_factor": rssd.daemon.schedule.PIVOT_FACTOR if name == "rssd" else None,
        "active_cap_factor": rssd.daemon.schedule.ACTIVE_CAP_FACTOR if name == "rssd" else None,
        "quiet_min_posts": rssd.daemon.schedule.QUIET_MIN_POSTS if name == "rssd" else None,
    }


def host_kind(feed: Feed, feeds: int) -> str:
    if feed.host >= BIG_HOSTS or feeds < 2 * BIG_HOSTS * FEEDS_PER_BIG_HOST:
        return "own host"
    return "shared, 429s" if feed.host < LIMITED_HOSTS else "shared host"


def breakdown(feeds: list[Feed], days: float, tally: Tally, late: float) -> list[dict[str, object]]:
    """Where the delays come from (--by-class): one record per kind of feed and per kind
    of host, with the posts later than ``late`` seconds and what made them late."""
    groups: dict[str, list[int]] = {name: [] for name, _, _ in KINDS}
    for index, feed in enumerate(feeds):
        groups[feed.kind].append(index)
        groups.setdefault(host_kind(feed, len(feeds)), []).append(index)
    group_of: dict[int, list[str]] = {}
    for name, members in groups.items():
        for index in members:
            group_of.setdefault(index, []).append(name)
    delays: dict[str, list[float]] = {name: [] for name in groups}
    over: dict[str, dict[str, int]] = {name: dict.fromkeys(CAUSES, 0) for name in groups}
    for delay, index, cause in zip(
        tally.delays, tally.delay_feeds, tally.delay_causes, strict=True
    ):
        for name in group_of[index]:
            delays[name].append(delay)
            if delay > late:
                over[name][cause] += 1
    for index in tally.missed_feeds:
        for name in group_of[index]:
            over[name]["missed"] += 1
    all_over = sum(sum(over[name].values()) for name, _, _ in KINDS)  # each post once
    out: list[dict[str, object]] = []
    for name, members in groups.items():
        if not members:
            continue
        items = sum(1 for i in members for p in feeds[i].posts if 0 <= p < days * DAY)
        fetched = sorted(delays[name])
        median, p95 = (percentile(fetched, items, share) for share in (0.5, 0.95))
        late_here = sum(over[name].values())
        out.append(
            {
                "group": name,
                "feeds": len(members),
                "new_items": items,
                "requests_per_day": round(
                    sum(tally.feed_requests.get(i, 0) for i in members) / days
                ),
                "median_delay_minutes": round(median / MINUTE, 1) if median is not None else None,
                "p95_delay_minutes": round(p95 / MINUTE, 1) if p95 is not None else None,
                "late": late_here,
                "share_of_late": round(late_here / all_over, 3) if all_over else None,
                "late_by_cause": over[name],
            }
        )
    return out


HEADER = (
    "policy", "req/day", "req/new item", "304s", "median delay", "p95 delay",
    "max host req/min", "429s", "429s after 1st",
)  # fmt: skip


def row(record: dict[str, object]) -> tuple[str, ...]:
    return (
        str(record["policy"]),
        f"{record['requests_per_day']:,}",
        str(record["requests_per_new_item"]),
        f"{100 * float(str(record['share_304'])):.0f}%",
        f"{record['median_delay_minutes']} min",
        f"{record['p95_delay_minutes']} min",
        str(record["max_host_requests_per_minute"]),
        f"{record['http_429']:,}",
        f"{record['http_429_after_first']:,}",
    )


BY_CLASS_HEADER = (
    "group", "feeds", "new items", "req/day", "median delay", "p95 delay", "late",
    "share of late", *(f"late: {cause}" for cause in CAUSES),
)  # fmt: skip


def by_class(record: dict[str, object]) -> list[dict[str, object]]:
    groups = record["by_class"]
    assert isinstance(groups, list)
    return groups


def _minutes(value: object) -> str:
    return "missed" if value is None else f"{value} min"


def class_row(group: dict[str, object]) -> tuple[str, ...]:
    causes = group["late_by_cause"]
    assert isinstance(causes, dict)
    share = group["share_of_late"]
    return (
        str(group["group"]),
        f"{group['feeds']:,}",
        f"{group['new_items']:,}",
        f"{group['requests_per_day']:,}",
        _minutes(group["median_delay_minutes"]),
        _minutes(group["p95_delay_minutes"]),
        f"{group['late']:,}",
        "" if share is None else f"{100 * float(str(share)):.1f}%",
        *(f"{causes[cause]:,}" for cause in CAUSES),
    )


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print(
            "  ".join(
                cell.rjust(w) if i else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--policy", action="append", choices=sorted(POLICIES))
    parser.add_argument(
        "--by-class",
        action="store_true",
        help="also break each policy's delays down by kind of feed and of host, with the "
        "posts later than --late-minutes and what made them late",
    )
    parser.add_argument(
        "--late-minutes",
        type=float,
        help="with --by-class: a post later than this is late (default: the policy's own "
        "p95 delay)",
    )
    parser.add_argument(
        "--pivot-factor",
        type=float,
        help="an experiment: rssd's PIVOT_FACTOR instead of its own (smaller: more requests, "
        "shorter delays)",
    )
    parser.add_argument(
        "--active-cap-factor",
        type=float,
        help="an experiment: rssd's ACTIVE_CAP_FACTOR instead of its own (1e9: no cap)",
    )
    parser.add_argument(
        "--quiet-min-posts",
        type=int,
        help="an experiment: rssd's QUIET_MIN_POSTS instead of its own (1e9: no quiet hours)",
    )
    args = parser.parse_args(argv)
    schedule = rssd.daemon.schedule
    if args.pivot_factor is not None:
        schedule.PIVOT_FACTOR = args.pivot_factor
    if args.active_cap_factor is not None:
        schedule.ACTIVE_CAP_FACTOR = args.active_cap_factor
    if args.quiet_min_posts is not None:
        schedule.QUIET_MIN_POSTS = args.quiet_min_posts
    feeds = population(args.feeds, args.days, args.seed)
    records = []
    for name in args.policy or POLICIES:
        planner, polite = POLICIES[name]
        started = time.perf_counter()
        tally = replay(feeds, args.days, planner, polite, args.seed, detail=args.by_class)
        record = summary(name, feeds, args.days, tally, time.perf_counter() - started)
        if args.by_class:
            p95 = record["p95_delay_minutes"]
            late = args.late_minutes if args.late_minutes is not None else p95
            record["late_minutes"] = late
            record["by_class"] = breakdown(
                feeds, args.days, tally, math.inf if late is None else float(str(late)) * MINUTE
            )
        records.append(record)
        if args.json:
            print(json.dumps(record), flush=True)
    if not args.json:
        print_table([HEADER, *(row(r) for r in records)])
        for record in records:
            if "by_class" in record:
                print(f"\n{record['policy']}: posts later than {record['late_minutes']} min")
                print_table([BY_CLASS_HEADER, *(class_row(r) for r in by_class(record))])
        first = records[0]
        print(
            f"\n{args.feeds:,} feeds, {args.days:g} days, seed {args.seed}: "
            f"{first['new_items']:,} new items"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
