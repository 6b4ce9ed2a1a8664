"""bench/politeness.py's --by-class breakdown accounts for every post once: the kinds of
feed split the new posts and the late ones between them, and a late post has one cause.
Behaviour only: no figure of the bench is asserted here."""

from __future__ import annotations

from tests.support.bench import load_bench

politeness = load_bench("politeness")


def test_the_breakdown_counts_every_post_once() -> None:
    feeds = politeness.population(300, 2.0, 7)
    for name, (planner, polite) in politeness.POLICIES.items():
        tally = politeness.replay(feeds, 2.0, planner, polite, 7, detail=True)
        record = politeness.summary(name, feeds, 2.0, tally, 0.0)
        late = 30 * politeness.MINUTE
        groups = {g["group"]: g for g in politeness.breakdown(feeds, 2.0, tally, late)}
        kinds = [groups[kind] for kind, _, _ in politeness.KINDS if kind in groups]
        assert sum(g["new_items"] for g in kinds) == record["new_items"]
        assert sum(g["feeds"] for g in kinds) == len(feeds)
        expected_late = sum(1 for d in tally.delays if d > late) + tally.missed
        assert sum(g["late"] for g in kinds) == expected_late
        for group in groups.values():
            assert sum(group["late_by_cause"].values()) == group["late"]
        assert sum(tally.feed_requests.values()) == tally.requests
        assert len(tally.delay_causes) == len(tally.delays)


def test_causes_name_the_host_hold_only_when_it_made_most_of_the_delay() -> None:
    state = politeness.State(due=0.0, planned=100.0, held_by="host gap")
    assert politeness.cause_of(state, 110.0, 0.0) == "interval"  # 10 s of 110 held
    assert politeness.cause_of(state, 110.0, 105.0) == "host gap"  # posted after the due
    state.held_by, state.stretched = "", True
    assert politeness.cause_of(state, 110.0, 0.0) == "silence"
    state.failures = 1
    assert politeness.cause_of(state, 110.0, 0.0) == "after 429"


def test_the_window_hours_kept_up_to_date_match_a_recount() -> None:
    """The quiet hours' input, kept as posts enter and leave the 30-day window (not
    recounted per poll), equals a recount of the window's posts at every step, including
    a jump past the whole window."""
    day, hour = politeness.DAY, politeness.HOUR
    feed = politeness.Feed(host=0, posts=[i * 7 * hour + 0.5 * hour for i in range(800)])
    state = politeness.State(due=0.0)
    steps = [(0, 10), (0, 40), (5, 41), (30, 90), (31, 91), (200, 260), (700, 800)]
    for first, seen in steps:
        state.seen = seen
        recount = [0] * 24
        for p in feed.posts[first:seen]:
            recount[int(p % day // hour)] += 1
        assert politeness.window_hours(feed, state, first) == tuple(recount)
