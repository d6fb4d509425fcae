"""``GcTuning``: the daemon's GC thresholds follow the jobs it runs, with hysteresis, set only when the band
changes. The real ``gc`` module, its thresholds put back after each test."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from router.gc_tuning import HEAVY, HEAVY_AT, LIGHT, LIGHT_BELOW, GcTuning
from tests.waiting import until


@pytest.fixture(autouse=True)
def thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_the_band_follows_the_running_jobs_with_hysteresis() -> None:
    running = [0]
    tuning = GcTuning(lambda: running[0])
    seen = []
    for count in (0, HEAVY_AT - 1, HEAVY_AT, LIGHT_BELOW, LIGHT_BELOW - 1, HEAVY_AT - 1):
        running[0] = count
        tuning.apply()
        seen.append(gc.get_threshold())
    # Up at HEAVY_AT, and down only below LIGHT_BELOW: a count moving around one line does not flip it each second.
    assert seen == [LIGHT, LIGHT, HEAVY, HEAVY, LIGHT, LIGHT]


def test_a_band_already_set_is_not_set_again() -> None:
    tuning = GcTuning(lambda: 0)
    tuning.apply()
    gc.set_threshold(700, 10, 10)  # someone else's; apply leaves it while its own band holds
    tuning.apply()
    assert gc.get_threshold() == (700, 10, 10) and tuning.current == LIGHT


async def test_run_applies_the_band_until_cancelled() -> None:
    running = [0]
    tuning = GcTuning(lambda: running[0])
    task = asyncio.create_task(tuning.run(interval=0.01))
    await until(lambda: tuning.current == LIGHT)
    running[0] = HEAVY_AT
    await until(lambda: gc.get_threshold() == HEAVY)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
