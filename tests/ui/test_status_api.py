"""The status page's HTTP side: static files with a strict CSP, GET /v1/status, job filters and /content."""

from __future__ import annotations


from typing import Any

import pytest

from router.activity import Activity, summarize
from router.http.ui import CONTENT_SECURITY_POLICY
from tests.daemon.conftest import MOCK_ROUTES, Daemon, StartDaemon
from tests.waiting import until

KEYS = "user-token-1111:,admin-token-2222:admin"
ADMIN = {"Authorization": "Bearer admin-token-2222"}
USER = {"Authorization": "Bearer user-token-1111"}

ROUTES = MOCK_ROUTES + """
[routes."video-broken"]
kind = "video"
[[routes."video-broken".attempts]]
provider = "mock"
model = "mock-broken"
mock = { responses = [ { error = { type = "ProviderUnavailableError", message = "vendor 503" } } ] }
[[routes."video-broken".attempts]]
provider = "mock"
model = "mock-video"

[routes."video-keyed"]
kind = "video"
[[routes."video-keyed".attempts]]
provider = "fal"
model = "fal-ai/veo3"
api_key_env = "UI_TEST_MISSING_KEY"
[[routes."video-keyed".attempts]]
provider = "fal"
model = "fal-ai/kling"
api_key_env = "UI_TEST_PRESENT_KEY"

[providers."mock"]
max_concurrency = 3
requests_per_minute = 600
"""


async def test_static_files_are_public_with_a_strict_csp(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(api_keys=KEYS)
    status, body, headers = await daemon.request("GET", "/ui/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<script src=\"/ui/app.js\"" in body and "job_" not in body  # the page carries no data
    csp = headers["Content-Security-Policy"]
    assert csp == CONTENT_SECURITY_POLICY
    for directive in ("default-src 'none'", "script-src 'self'", "require-trusted-types-for 'script'",
                      "frame-ancestors 'none'", "connect-src 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "http" not in csp  # no CDN, nothing inline
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css"), ("favicon.svg", "image/svg+xml")):
        status, _, headers = await daemon.request("GET", f"/ui/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind) and "Content-Security-Policy" in headers
    # Revalidation answers 304 with the same ETag.
    _, _, headers = await daemon.request("GET", "/ui/app.js")
    status, _, again = await daemon.request("GET", "/ui/app.js", headers={"If-None-Match": headers["ETag"]})
    assert status == 304 and again["ETag"] == headers["ETag"]
    status, _, headers = await daemon.request("GET", "/ui", allow_redirects=False)
    assert status == 302 and headers["Location"] == "/ui/"
    # Only shipped files answer: no traversal, no other package files.
    for path in ("/ui/ui.py", "/ui/..%2fui.py", "/ui/static", "/ui/nope.js"):
        status, body, _ = await daemon.request("GET", path)
        assert status == 404 and body["error"]["type"] == "not_found_error", path
    # The API behind it still wants a token.
    status, body, _ = await daemon.request("GET", "/v1/status")
    assert status == 401 and body["error"]["code"] == "missing_api_key"


async def test_status_needs_an_admin_token(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(api_keys=KEYS)
    status, body, _ = await daemon.request("GET", "/v1/status", headers=USER)
    assert status == 403 and body["error"]["code"] == "admin_required"
    status, body, _ = await daemon.request("GET", "/v1/status", headers=ADMIN)
    assert status == 200 and body["object"] == "status"


async def test_status_shows_keys_circuits_limits_and_traffic(start_daemon: StartDaemon,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-present-key-0123456789"
    monkeypatch.setenv("UI_TEST_PRESENT_KEY", secret)
    monkeypatch.delenv("UI_TEST_MISSING_KEY", raising=False)
    monkeypatch.delenv("FAL_KEY", raising=False)
    daemon = await start_daemon(ROUTES, circuit_threshold=2, circuit_cooldown_seconds=60)
    for _ in range(2):  # two failures in a row open mock/mock-broken; each request falls back to mock-video
        status, _, _ = await daemon.request("POST", "/v1/video/generations", json={"model": "video-broken", "prompt": "x"})
        assert status == 200
    status, _, _ = await daemon.request("POST", "/v1/video/generations", json={"model": "video-down", "prompt": "x"})
    assert status == 429
    slow = (await daemon.request("POST", "/v1/jobs", json={"model": "video-slow", "prompt": "x"}))[1]["id"]

    async def slot_taken() -> bool:
        body = (await daemon.request("GET", "/v1/status"))[1]
        return body["providers"][0]["in_use"] == 1

    await until(slot_taken)
    status, body, _ = await daemon.request("GET", "/v1/status")
    assert status == 200
    assert secret not in str(body)
    assert body["routes"]["video-keyed"] == [{"key": "missing", "env": ["UI_TEST_MISSING_KEY", "FAL_KEY"]},
                                             {"key": "present", "env": ["UI_TEST_PRESENT_KEY", "FAL_KEY"]}]
    assert body["routes"]["video-fast"] == [{"key": "not_needed", "env": []}]
    models = {(m["provider"], m["model"]): m for m in body["models"]}
    broken = models[("mock", "mock-broken")]
    assert broken["circuit"]["state"] == "open" and broken["circuit"]["failures"] == 2
    assert 0 < broken["circuit"]["retry_in_seconds"] <= 60
    assert broken["recent"]["failed"] == 2 and broken["routes"] == ["video-broken"]
    assert [o["error_type"] for o in broken["recent"]["last"]] == ["ProviderUnavailableError"] * 2
    assert models[("mock", "mock-video")]["circuit"] == {"state": "closed", "failures": 0, "retry_in_seconds": None}
    assert models[("mock", "mock-video")]["recent"]["success"] == 2
    assert models[("mock", "mock-video")]["recent"]["latency_p50_seconds"] is not None
    assert body["providers"] == [{"provider": "mock", "max_concurrency": 3, "requests_per_minute": 600,
                                  "in_use": 1, "waiting": 0}]
    traffic = body["traffic"]["routes"]
    assert sum(traffic["video-broken"]["requests"]) == 2 and sum(traffic["video-broken"]["fallbacks"]) == 2
    assert sum(traffic["video-broken"]["failures"]) == 0
    assert sum(traffic["video-down"]["failures"]) == 1 and len(traffic["video-down"]["requests"]) == 15
    spend = body["spend_today"]
    assert spend["currency"] == "USD" and spend["total"] == 0  # the mock bills nothing
    assert set(spend["routes"]) <= {"video-broken"} and set(spend["providers"]) <= {"mock"}
    # Reading the status changed nothing: the circuit is still open, the slot still held.
    await daemon.request("DELETE", f"/v1/jobs/{slow}")
    body = (await daemon.request("GET", "/v1/status"))[1]
    assert body["providers"][0]["in_use"] == 0
    assert sum(body["traffic"]["routes"].get("video-slow", {"requests": [0]})["requests"]) == 0  # a cancel is no failure


async def test_job_list_filters_and_prompt(daemon: Daemon) -> None:
    ids = {}
    for route in ("video-fast", "video-slow", "image-fast"):
        ids[route] = (await daemon.request("POST", "/v1/jobs", json={"model": route, "prompt": f"<b>{route}</b>"}))[1]["id"]

    async def fast_done() -> bool:
        return (await daemon.request("GET", f"/v1/jobs/{ids['video-fast']}"))[1]["status"] == "completed"

    await until(fast_done)
    body = (await daemon.request("GET", "/v1/jobs?model=video-slow"))[1]
    assert [j["id"] for j in body["data"]] == [ids["video-slow"]] and body["data"][0]["prompt"] == "<b>video-slow</b>"
    body = (await daemon.request("GET", "/v1/jobs?status=completed&model=video-fast"))[1]
    assert [j["id"] for j in body["data"]] == [ids["video-fast"]]
    body = (await daemon.request("GET", "/v1/jobs?status=failed"))[1]
    assert body["data"] == [] and body["has_more"] is False
    body = (await daemon.request("GET", "/v1/jobs?status=completed&limit=1"))[1]
    assert len(body["data"]) == 1
    status, body, _ = await daemon.request("GET", "/v1/jobs?status=done")
    assert status == 400 and body["error"]["param"] == "status"
    body = (await daemon.request("GET", "/v1/jobs?kind=image"))[1]
    assert [j["id"] for j in body["data"]] == [ids["image-fast"]]
    status, body, _ = await daemon.request("GET", "/v1/jobs?kind=videos")  # a typo listed nothing, silently
    assert status == 400 and body["error"]["param"] == "kind"
    await daemon.request("DELETE", f"/v1/jobs/{ids['video-slow']}")
    body = (await daemon.request("GET", "/v1/jobs?status=cancelled"))[1]
    assert [j["id"] for j in body["data"]] == [ids["video-slow"]]


async def test_job_content_serves_videos_and_images(daemon: Daemon) -> None:
    video = (await daemon.request("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "x"}))[1]["id"]
    image = (await daemon.request("POST", "/v1/jobs", json={"model": "image-fast", "prompt": "x"}))[1]["id"]
    slow = (await daemon.request("POST", "/v1/jobs", json={"model": "video-slow", "prompt": "x"}))[1]["id"]

    async def done() -> bool:
        statuses = [(await daemon.request("GET", f"/v1/jobs/{i}"))[1]["status"] for i in (video, image)]
        return statuses == ["completed", "completed"]

    await until(done)
    async with daemon.session.get(f"{daemon.url}/v1/jobs/{video}/content") as response:
        assert response.status == 200 and response.content_type == "video/mp4"
        assert (await response.read())[4:8] == b"ftyp"
    async with daemon.session.get(f"{daemon.url}/v1/jobs/{image}/content") as response:
        assert response.status == 200 and response.content_type == "image/png"
        assert (await response.read())[:4] == b"\x89PNG"
    status, body, _ = await daemon.request("GET", f"/v1/jobs/{image}/content?index=3")
    assert status == 404 and body["error"]["param"] == "index"
    status, body, _ = await daemon.request("GET", f"/v1/videos/{image}/content")  # was a 500 (no "video")
    assert status == 404 and body["error"]["code"] == "job_not_found", body
    status, body, _ = await daemon.request("GET", f"/v1/jobs/{slow}/content")
    assert status == 409
    status, body, _ = await daemon.request("GET", "/v1/jobs/job_nope/content")
    assert status == 404 and body["error"]["code"] == "job_not_found"
    await daemon.request("DELETE", f"/v1/jobs/{slow}")


def test_activity_keeps_a_rolling_window() -> None:
    now = [1_000_000 * 60.0]
    activity = Activity(window_minutes=3, clock=lambda: now[0])
    activity.request_finished("a", failed=False)
    activity.request_finished("a", failed=True)
    activity.fell_back("a")
    now[0] += 60
    activity.request_finished("b", failed=False)
    traffic = activity.traffic()
    assert traffic["routes"]["a"] == {"requests": [0, 2, 0], "failures": [0, 1, 0], "fallbacks": [0, 1, 0]}
    assert traffic["routes"]["b"]["requests"] == [0, 0, 1]
    now[0] += 120  # "a"'s minute is out of the window now, and its bucket is dropped at the next write
    assert "a" not in activity.traffic()["routes"]
    activity.request_finished("b", failed=False)
    assert len(activity._minutes) == 2  # noqa: SLF001 - bounded: only minutes inside the window are kept
    for i in range(80):
        activity.attempt_finished("a", "fal", "m", "failed" if i % 2 else "success", float(i), "X" if i % 2 else None)
    recent = activity.attempts("fal", "m")
    assert len(recent) == 50 and recent[-1].seconds == 79.0
    summary = summarize(recent)
    assert summary["success"] == 25 and summary["failed"] == 25 and summary["latency_max_seconds"] == 79.0
    assert len(summary["last"]) == 10




async def test_spend_today_is_the_ledger_summed_over_clients(start_daemon: StartDaemon, fal_emulator: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UI_TEST_FAL_KEY", fal_emulator.api_key)
    daemon = await start_daemon(f"""
[routes."fal-video"]
kind = "video"
[[routes."fal-video".attempts]]
provider = "fal"
model = "fal-ai/veo3/fast"
base_url = "{fal_emulator.url}"
api_key_env = "UI_TEST_FAL_KEY"
poll_interval = 0.01
""", api_keys="alice=alice-token-1,bob=bob-token-2,root=root-token-3:admin")
    for token in ("alice-token-1", "bob-token-2"):
        status, body, _ = await daemon.request("POST", "/v1/video/generations", json={"model": "fal-video", "prompt": "x"},
                                               headers={"Authorization": f"Bearer {token}"})
        assert status == 200, body
    root = {"Authorization": "Bearer root-token-3"}
    spend = (await daemon.request("GET", "/v1/status", headers=root))[1]["spend_today"]
    usage = (await daemon.request("GET", "/v1/usage", headers=root))[1]["data"]
    per_client = {u["client"]: u["today"]["spent_usd"] for u in usage}
    assert per_client["alice"] > 0 and per_client["bob"] > 0
    assert spend["routes"]["fal-video"] == pytest.approx(per_client["alice"] + per_client["bob"])
    assert spend["providers"] == {"fal": spend["routes"]["fal-video"]} and spend["total"] == spend["routes"]["fal-video"]
