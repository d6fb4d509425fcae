"""GET /metrics through the running daemon: generations, fallbacks, jobs and rejections are counted from the
orchestrator's events, and no client-supplied text (model names, paths, methods, job ids) becomes a label."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from prometheus_client.parser import text_string_to_metric_families

from router.metrics import HTTP_METHODS
from tests.daemon.conftest import Daemon

#: Tries to break out of the exposition format as well as to mint a series.
HOSTILE = 'evil-model"} 1\nfake_metric{route="x'

Labels = tuple[tuple[str, str], ...]


async def scrape(daemon: Daemon) -> tuple[str, dict[str, dict[Labels, float]]]:
    status, text, headers = await daemon.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    by_name: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            by_name.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return text, by_name


def labels(**values: str) -> Labels:
    return tuple(sorted(values.items()))


async def wait_job(daemon: Daemon, job_id: str, *statuses: str) -> None:
    for _ in range(500):
        if (await daemon.request("GET", f"/v1/jobs/{job_id}"))[1]["status"] in statuses:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} never reached {statuses}")


async def test_a_scripted_run_gives_exactly_these_series(daemon: Daemon) -> None:
    assert (await daemon.request("POST", "/v1/video/generations", json={"model": "video-fast", "prompt": "x"}))[0] == 200
    await daemon.request("POST", "/v1/video/generations", json={"model": "video-down", "prompt": "x"})  # both fail
    assert (await daemon.request("POST", "/v1/images/generations", json={"model": "image-fast", "prompt": "x"}))[0] == 200
    _, job, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "x"})
    await wait_job(daemon, job["id"], "completed")

    _, got = await scrape(daemon)
    assert got["tarash_router_requests_total"] == {
        labels(route="video-fast", kind="video", outcome="success"): 2,
        labels(route="video-down", kind="video", outcome="failed"): 1,
        labels(route="image-fast", kind="image", outcome="success"): 1,
    }
    assert got["tarash_router_attempts_total"] == {
        labels(route="video-fast", provider="mock", model="mock-video", outcome="success", error_type=""): 2,
        labels(route="video-down", provider="mock", model="mock-down-1", outcome="failed",
               error_type="ProviderUnavailableError"): 1,
        labels(route="video-down", provider="mock", model="mock-down-2", outcome="failed",
               error_type="RateLimitError"): 1,
        labels(route="image-fast", provider="mock", model="mock-image", outcome="success", error_type=""): 1,
    }
    assert got["tarash_router_fallbacks_total"] == {
        labels(route="video-down", from_provider="mock", to_provider="mock"): 1}
    assert got["tarash_router_overhead_seconds_count"] == {
        labels(route="video-fast", kind="video"): 2, labels(route="video-down", kind="video"): 1,
        labels(route="image-fast", kind="image"): 1}
    assert got["tarash_router_attempt_duration_seconds_count"][
        labels(route="video-fast", provider="mock", model="mock-video", outcome="success")] == 2
    assert got["tarash_router_jobs_in_flight"] == {labels(kind="video"): 0, labels(kind="image"): 0}
    assert got["tarash_router_jobs_queued"] == {(): 0}
    assert got["tarash_router_job_store_jobs"] == {(): 1}
    http = got["tarash_router_http_requests_total"]
    assert http[labels(method="POST", path="/v1/jobs", status="202")] == 1
    assert http[labels(method="GET", path="/v1/jobs/{id}", status="200")] >= 1
    assert http[labels(method="POST", path="/v1/images/generations", status="200")] == 1


async def test_client_text_never_becomes_a_label(daemon: Daemon) -> None:
    for path in ("/v1/video/generations", "/v1/jobs", "/v1/videos"):  # three video endpoints
        assert (await daemon.request("POST", path, json={"model": HOSTILE, "prompt": "x"}))[0] == 404
    for path in ("/v1/image/generations", "/v1/images/generations"):
        assert (await daemon.request("POST", path, json={"model": HOSTILE, "prompt": "x"}))[0] == 404
    await daemon.request("GET", "/v1/jobs/job_evil-id-from-a-client")  # client text in a templated path
    await daemon.request("GET", "/" + quote(HOSTILE, safe=""))  # no route at all
    await daemon.request("PROPFIND", "/v1/models")  # a method no route takes (HTTP_METHODS guards the
    # pure-Python parser, which takes any token as a method; the C parser refuses unknown ones before us)

    text, got = await scrape(daemon)
    assert "evil" not in text.lower() and "fake_metric" not in text
    assert got["tarash_router_requests_total"] == {
        labels(route="unknown", kind="video", outcome="rejected"): 3,
        labels(route="unknown", kind="image", outcome="rejected"): 2,
    }
    templates = {resource.canonical for resource in daemon.server.app.router.resources()}
    http = got["tarash_router_http_requests_total"]
    assert {dict(key)["path"] for key in http} <= templates | {"unmatched"}
    assert {dict(key)["method"] for key in http} <= HTTP_METHODS | {"other"}
    assert http[labels(method="GET", path="/v1/jobs/{id}", status="404")] == 1
    assert http[labels(method="other", path="unmatched", status="405")] == 1
    assert http[labels(method="GET", path="unmatched", status="404")] == 1


async def test_a_cancelled_job_is_counted_and_leaves_nothing_in_flight(daemon: Daemon) -> None:
    _, job, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-slow", "prompt": "x"})
    await wait_job(daemon, job["id"], "running")
    _, got = await scrape(daemon)
    assert got["tarash_router_jobs_in_flight"] == {labels(kind="video"): 1}
    assert (await daemon.request("DELETE", f"/v1/jobs/{job['id']}"))[0] == 200

    _, got = await scrape(daemon)
    assert got["tarash_router_jobs_in_flight"] == {labels(kind="video"): 0}
    assert got["tarash_router_requests_total"] == {labels(route="video-slow", kind="video", outcome="cancelled"): 1}
    assert got["tarash_router_attempts_total"] == {
        labels(route="video-slow", provider="mock", model="mock-slow", outcome="failed",
               error_type="GenerationCancelledError"): 1}
