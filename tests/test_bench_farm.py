"""The benchmark's own parts do what bench/README.md says: the farm's latency draws are
seeded per (feed, request), its in-flight count returns to zero, and the bare client's
second pass is conditional. Behaviour only: no figure of the bench is asserted here."""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.support.bench import load_bench

farm = load_bench("farm")
bare_client = load_bench("bare_client")


def test_latency_draws_are_a_function_of_seed_feed_and_request() -> None:
    settings = farm.FarmSettings(feeds=10, latency_median_ms=100.0, latency_sigma=1.0)
    first = [farm.latency_seconds(settings, feed, 0) for feed in range(10)]
    assert first == [farm.latency_seconds(settings, feed, 0) for feed in range(10)]
    assert first != [farm.latency_seconds(settings, feed, 1) for feed in range(10)]
    other_seed = farm.FarmSettings(feeds=10, latency_median_ms=100.0, seed=2)
    assert first != [farm.latency_seconds(other_seed, feed, 0) for feed in range(10)]


def test_latency_draws_have_the_median_and_the_cap_asked_for() -> None:
    settings = farm.FarmSettings(latency_median_ms=100.0, latency_sigma=1.0, latency_max_ms=900)
    draws = [farm.latency_seconds(settings, feed, nth) for feed in range(500) for nth in range(4)]
    assert 0.085 < statistics.median(draws) < 0.115  # seeded: the same 2,000 draws every run
    assert max(draws) == 0.9  # sigma 1 puts ~1% above 10x the median: some hit the cap
    assert farm.latency_seconds(farm.FarmSettings(), 3, 0) == 0.0  # latency off


@pytest.fixture
async def running_farm() -> AsyncIterator[tuple[Any, int]]:
    settings = farm.FarmSettings(feeds=12, items=3, hosts=3, latency_median_ms=5.0)
    state = farm.Farm(settings)
    runner = web.AppRunner(state.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(addr[1] for addr in runner.addresses if isinstance(addr, tuple))
    try:
        yield state, port
    finally:
        await runner.cleanup()


async def test_bare_client_is_conditional_on_its_second_pass(
    running_farm: tuple[Any, int],
) -> None:
    state, port = running_farm
    urls = [f"http://127.0.0.1:{port}/feeds/{i}" for i in range(12)]
    validators: dict[str, list[str | None]] = {}
    first = await bare_client.check_all(urls, validators, 4, 2, 30.0)
    assert first["statuses"] == {"200": 12}
    assert first["failed"] == 0
    assert set(validators) == set(urls)
    assert state.asked == [1] * 12
    assert 1 <= state.in_flight_peak <= 4  # max_concurrency
    assert state.in_flight == 0

    state.reset()
    assert state.asked == [0] * 12  # the same draws again
    second = await bare_client.check_all(urls, validators, 4, 2, 30.0)
    assert second["statuses"] == {"304": 12}
    assert second["bytes"] == 0

    changed = state.advance(0.25)
    third = await bare_client.check_all(urls, validators, 4, 2, 30.0)
    assert third["statuses"] == {"200": len(changed), "304": 12 - len(changed)}
