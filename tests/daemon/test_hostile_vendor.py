"""Issue 12 item 11: a vendor that echoes our key everywhere (its JSON, its job ids, its error codes) never gets it
to a client, a log or the job store; media URLs a vendor returns are fetched through the SSRF guard, each redirect
hop checked again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from router.log_setup import configure
from router.netguard import ALLOW_PRIVATE_ENV
from tests.daemon.conftest import Daemon, StartDaemon
from tests.emulators.fal import FalEmulator

KEY = "fal-canary-4d1b7e9a0c2f48d3b6a5"
#: fal's own key shape, ``<key id>:<key secret>``: its ":" is percent-encoded in a URL.
FAL_SHAPED_KEY = "0b6f3c2e-9d41-4f7a-8e25-6c1d0a9b7f34:5e8d2a7c91b64f03d8a1c6e2b9f47d05"


def hostile(*, job_id_is_key: bool = False, error_code_is_key: bool = False, video_url: str | None = None,
            key: str = KEY) -> Any:
    """A middleware turning the fal emulator hostile: our key in every JSON answer (as it is, and percent-encoded in
    a URL), and optionally as the job id, as the failure's error code, or a result video URL of its choosing
    (``{host}``: the emulator's)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if not isinstance(response, web.Response) or response.content_type != "application/json":
            return response
        data = json.loads(response.body)  # type: ignore[arg-type]
        if not isinstance(data, dict):
            return response
        data["echo"] = {"your_key": key, "note": f"Key {key} was used",
                        "signed_url": f"https://cdn.example/v.mp4?key={quote(key, safe='')}"}
        if job_id_is_key and "request_id" in data:
            data["request_id"] = key
        if error_code_is_key and data.get("status") == "COMPLETED":
            data.update(error="failed for a reason", error_type=key)
        if video_url and isinstance(data.get("video"), dict):
            data["video"]["url"] = video_url.format(host=request.host)
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        return web.json_response(data, status=response.status, headers=headers)

    return middleware


async def start(start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch, fal: FalEmulator,
                fallback: bool = True, key: str = KEY) -> Daemon:
    monkeypatch.setenv("HOSTILE_FAL_KEY", key)
    routes = f"""
[routes."hostile"]
kind = "video"
[[routes."hostile".attempts]]
provider = "fal"
model = "fal-ai/veo3"
base_url = "{fal.url}"
api_key_env = "HOSTILE_FAL_KEY"
poll_interval = 0.01
"""
    if fallback:
        routes += '[[routes."hostile".attempts]]\nprovider = "mock"\nmodel = "mock-video"\n'
    return await start_daemon(routes)


async def finished_job(daemon: Daemon, body: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    status, created, _ = await daemon.request("POST", "/v1/jobs", json=body)
    assert status == 202, created
    for _ in range(500):
        _, job, _ = await daemon.request("GET", f"/v1/jobs/{created['id']}")
        if job["status"] in ("completed", "failed"):
            return job  # type: ignore[no-any-return]
        await asyncio.sleep(0.01)
    raise AssertionError(job)


def store_bytes(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (tmp_path / "data").glob("jobs.sqlite3*"))


@pytest.mark.parametrize("mode", ["echo", "job_id_is_key", "error_code_is_key"])
async def test_a_vendor_echoing_our_key_never_gets_it_out(start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                          mode: str) -> None:
    configure("debug", "json")
    fal = FalEmulator(api_key=KEY)
    fal.app.middlewares.append(hostile(job_id_is_key=mode == "job_id_is_key",
                                       error_code_is_key=mode == "error_code_is_key"))
    async with fal:
        daemon = await start(start_daemon, monkeypatch, fal, fallback=mode != "error_code_is_key")
        texts = [json.dumps(await finished_job(daemon, {"model": "hostile", "prompt": "a fox"}))]
        status, sync, _ = await daemon.request("POST", "/v1/video/generations", json={"model": "hostile", "prompt": "x"})
        texts.append(json.dumps(sync))
        _, listed, _ = await daemon.request("GET", "/v1/jobs")
        texts.append(json.dumps(listed))
        job_id = listed["data"][0]["id"]
        texts.append((await daemon.request("GET", f"/v1/jobs/{job_id}/events"))[1])
        submits = fal.calls["submit"]
    if mode == "echo":
        assert listed["data"][0]["status"] == "completed" and status == 200
        assert listed["data"][0]["result"]["raw_response"]["echo"]["your_key"] == "[REDACTED]"
    elif mode == "job_id_is_key":  # refused at once, never polled, never stored; the fallback served it
        assert listed["data"][0]["status"] == "completed" and submits == 2
        attempt = listed["data"][0]["execution_metadata"]["attempts"][0]
        assert attempt["error_type"] == "BadProviderResponseError" and "credentials" in attempt["error_message"]
    else:
        assert listed["data"][0]["status"] == "failed"  # (its code and message are checked with the rest below)
    captured = capsys.readouterr()
    for text in [*texts, captured.out, captured.err]:
        assert KEY not in text
    assert KEY.encode() not in store_bytes(tmp_path)


async def test_a_vendor_echoing_a_fal_shaped_key_percent_encoded_never_gets_it_out(
        start_daemon: StartDaemon, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    configure("debug", "json")
    fal = FalEmulator(api_key=FAL_SHAPED_KEY)
    fal.app.middlewares.append(hostile(key=FAL_SHAPED_KEY))
    async with fal:
        daemon = await start(start_daemon, monkeypatch, fal, fallback=False, key=FAL_SHAPED_KEY)
        job = await finished_job(daemon, {"model": "hostile", "prompt": "a fox"})
        _, events, _ = await daemon.request("GET", f"/v1/jobs/{job['id']}/events")
    assert job["status"] == "completed"
    assert job["result"]["raw_response"]["echo"]["signed_url"] == "https://cdn.example/v.mp4?key=[REDACTED]"
    captured = capsys.readouterr()
    encoded = quote(FAL_SHAPED_KEY, safe="")
    for text in (json.dumps(job), events, captured.out, captured.err):
        assert FAL_SHAPED_KEY not in text and encoded not in text and encoded.lower() not in text
    assert encoded.encode() not in store_bytes(tmp_path)


async def test_vendor_media_urls_go_through_the_ssrf_guard(start_daemon: StartDaemon,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fal = FalEmulator(api_key=KEY)
    async with fal:
        daemon = await start(start_daemon, monkeypatch, fal, fallback=False)
        job = await finished_job(daemon, {"model": "hostile", "prompt": "a fox"})
        monkeypatch.delenv(ALLOW_PRIVATE_ENV)  # the guard's default: the emulator's loopback URL is private
        status, body, _ = await daemon.request("GET", f"/v1/videos/{job['id']}/content")
        assert status == 502 and "non-public" in body["error"]["message"]
        assert fal.calls["content"] == 0  # never fetched


async def test_every_redirect_hop_of_a_vendor_url_is_checked(start_daemon: StartDaemon,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fal = FalEmulator(api_key=KEY)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    fal.app.router.add_get("/_redirect", redirect)
    fal.app.middlewares.append(hostile(video_url="http://{host}/_redirect?to=file:///etc/passwd"))
    async with fal:
        daemon = await start(start_daemon, monkeypatch, fal, fallback=False)
        job = await finished_job(daemon, {"model": "hostile", "prompt": "a fox"})
        status, body, _ = await daemon.request("GET", f"/v1/videos/{job['id']}/content")
        assert status == 502 and "only http(s) URLs" in body["error"]["message"], body
