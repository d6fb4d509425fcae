"""A push is never held by the poll pacer: with the daemon's event loop saturated (so the pacer holds due polls)
and polls allowed to be held 30 s, a fal job whose vendor pushes its completion ends within seconds of the push,
after one status poll (the first, right after the submit) and one submit."""

from __future__ import annotations

import time

from tests.emulators.fal import FalEmulator
from tests.jobs.test_pacer_daemon import saturated_loop
from tests.webhooks.conftest import StartRouter
from tests.webhooks.test_inbound import fal_routes, keys  # noqa: F401 - keys: the autouse fixture


async def test_a_pushed_job_ends_at_once_while_the_loop_is_saturated(start_router: StartRouter) -> None:
    async with FalEmulator(polls_to_complete=10_000) as fal:  # only the push can end it
        router = await start_router(fal_routes(fal), poll_defer_max_seconds=30)
        async with saturated_loop():
            started = time.monotonic()
            job = await router.finished(await router.create({"model": "video", "prompt": "a fox"}))
            took = time.monotonic() - started
        assert job["status"] == "completed" and job["result"]["video"].startswith(fal.url)
        assert took < 5  # the push ended the 60-s wait; no held poll stood in its way
        assert fal.calls["submit"] == 1 and fal.calls["status"] <= 2
        assert [d.status for d in fal.webhook_deliveries] == [200]
