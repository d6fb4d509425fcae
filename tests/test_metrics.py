"""Metrics at the library level: a scripted run with a fallback gives exactly the expected series, importing
router registers nothing global, and labels stay bounded."""

from __future__ import annotations

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

import router
from router.metrics import Metrics
from router.orchestrator import ChainObserver, run_chain


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render()[0].decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_importing_router_registers_nothing_global() -> None:
    names = {name for collector in prometheus_client.REGISTRY._collector_to_names  # noqa: SLF001
             for name in prometheus_client.REGISTRY._collector_to_names[collector]}  # noqa: SLF001
    assert not any(name.startswith("tarash_router") for name in names)


def series(got: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: value for (sample, labels), value in got.items() if sample == name}


def flaky_then_good() -> router.VideoGenerationConfig:
    failing = router.VideoGenerationConfig(provider="mock", model="flaky", mock=router.MockConfig(
        responses=[router.MockResponse(error={"type": "RateLimitError", "message": "busy"})]))
    return failing.model_copy(update={"fallback_configs": [router.VideoGenerationConfig(provider="mock", model="good")]})


async def test_scripted_run_with_a_fallback() -> None:
    metrics = Metrics()
    for _ in range(3):
        await run_chain("video", flaky_then_good(), router.VideoGenerationRequest(prompt="x"),
                        observers=[metrics.observer("video-route", "video")])
    got = samples(metrics)
    route = (("route", "video-route"),)
    assert series(got, "tarash_router_requests_total") == {(("kind", "video"), ("outcome", "success"), *route): 3}
    assert series(got, "tarash_router_attempts_total") == {
        (("error_type", "RateLimitError"), ("model", "flaky"), ("outcome", "failed"), ("provider", "mock"), *route): 3,
        (("error_type", ""), ("model", "good"), ("outcome", "success"), ("provider", "mock"), *route): 3,
    }
    assert series(got, "tarash_router_fallbacks_total") == {(("from_provider", "mock"), *route, ("to_provider", "mock")): 3}
    assert series(got, "tarash_router_attempt_duration_seconds_count") == {
        (("model", "flaky"), ("outcome", "failed"), ("provider", "mock"), *route): 3,
        (("model", "good"), ("outcome", "success"), ("provider", "mock"), *route): 3,
    }
    assert series(got, "tarash_router_request_duration_seconds_count") == {(("kind", "video"), *route): 3}
    assert series(got, "tarash_router_overhead_seconds_count") == {(("kind", "video"), *route): 3}
    assert series(got, "tarash_router_jobs_in_flight") == {(("kind", "video"),): 0}
    buckets = [dict(labels)["le"] for name, labels in got if name == "tarash_router_attempt_duration_seconds_bucket"]
    assert "1800.0" in buckets and "0.1" in buckets  # seconds-long images and 30-minute videos both fit


async def test_route_labels_are_configured_names_or_unknown() -> None:
    configured = {"video-route"}
    metrics = Metrics(routes=lambda: configured)
    hostile = [f'evil-{i}"}} 1\nfake{{route="x' for i in range(20)]
    for name in hostile:
        metrics.request_rejected(name, "video")
        await run_chain("video", flaky_then_good(), router.VideoGenerationRequest(prompt="x"),
                        observers=[metrics.observer(name, "video")])
    metrics.request_rejected(None, "image")
    text = metrics.render()[0].decode()
    assert "evil" not in text and "fake" not in text
    got = samples(metrics)
    assert series(got, "tarash_router_requests_total") == {
        (("kind", "video"), ("outcome", "rejected"), ("route", "unknown")): 20,
        (("kind", "video"), ("outcome", "success"), ("route", "unknown")): 20,
        (("kind", "image"), ("outcome", "rejected"), ("route", "unknown")): 1,
    }
    assert {dict(labels)["route"] for name, labels in got if "route" in dict(labels)} == {"unknown"}


async def test_a_cancel_between_attempts_still_ends_the_chain() -> None:
    """Cancelled while another observer awaits between attempts (a job-store write): in-flight returns to 0."""
    import asyncio

    reached = asyncio.Event()

    class SlowStore(ChainObserver):
        async def fallback(self, *args: object) -> None:
            reached.set()
            await asyncio.Event().wait()  # the write that is in progress when the cancel lands

    metrics = Metrics()
    task = asyncio.create_task(run_chain("video", flaky_then_good(), router.VideoGenerationRequest(prompt="x"),
                                         observers=[SlowStore(), metrics.observer("r", "video")]))
    await reached.wait()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    got = samples(metrics)
    assert series(got, "tarash_router_jobs_in_flight") == {(("kind", "video"),): 0}
    assert series(got, "tarash_router_requests_total") == {(("kind", "video"), ("outcome", "cancelled"), ("route", "r")): 1}
    # The observer after the cancelled one still heard the fallback.
    assert series(got, "tarash_router_fallbacks_total") == {(("from_provider", "mock"), ("route", "r"), ("to_provider", "mock")): 1}


async def test_failed_and_cancelled_outcomes() -> None:
    import asyncio

    metrics = Metrics()
    down = router.VideoGenerationConfig(provider="mock", model="down", mock=router.MockConfig(
        responses=[router.MockResponse(error={"type": "ContentPolicyError"})]))
    try:
        await run_chain("video", down, router.VideoGenerationRequest(prompt="x"), observers=[metrics.observer("r", "video")])
    except router.ContentPolicyError:
        pass
    slow = router.VideoGenerationConfig(provider="mock", model="slow", mock=router.MockConfig(
        polling=router.MockPollingConfig(status_sequence=["queued", "completed"], delay_between_updates=3600)))
    task = asyncio.create_task(run_chain("video", slow, router.VideoGenerationRequest(prompt="x"),
                                         observers=[metrics.observer("r", "video")]))
    await asyncio.sleep(0.05)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    got = samples(metrics)
    assert got[("tarash_router_requests_total", (("kind", "video"), ("outcome", "failed"), ("route", "r")))] == 1
    assert got[("tarash_router_requests_total", (("kind", "video"), ("outcome", "cancelled"), ("route", "r")))] == 1
    assert got[("tarash_router_jobs_in_flight", (("kind", "video"),))] == 0


def test_config_reload_metrics() -> None:
    metrics = Metrics()
    metrics.config_reloaded(False)
    metrics.config_reloaded(True)
    got = samples(metrics)
    assert got[("tarash_router_config_reloads_total", (("result", "failure"),))] == 1
    assert got[("tarash_router_config_reloads_total", (("result", "success"),))] == 1
    assert got[("tarash_router_config_last_reload_success_timestamp_seconds", ())] > 1.7e9
