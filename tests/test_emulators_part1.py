"""fal, OpenAI, Azure OpenAI and Replicate emulators and their shared base, driven with raw aiohttp.

Every fault of the base menu is exercised at least once across this file: rate_limit (fal in-band @status,
Replicate), server_error (fal, step "*"), unavailable (base, any step), hang (Replicate), malformed_json (Azure),
drop (Sora status, fal in-band @content), auth (Replicate), bad_request (fal); and each job outcome:
content_policy (fal in-band, OpenAI and Azure images, Sora, Replicate), job_failed (fal, Sora), empty_result
(fal, OpenAI images, Replicate).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import sys
import time
from typing import Any

import aiohttp
import pytest

from tests.emulators._base import Emulator, Fault, image_dims
from tests.emulators.fal import FalEmulator
from tests.emulators.openai import OpenAIEmulator
from tests.emulators.replicate import ReplicateEmulator

KEY = "test-key"
FAL = {"Authorization": f"Key {KEY}"}
BEARER = {"Authorization": f"Bearer {KEY}"}
AZURE = {"api-key": KEY}
PNG = b"\x89PNG\r\n\x1a\n"
#: replicate-python prediction.py: the SDK's progress parser.
TQDM = re.compile(r"^\s*(\d+)%\s*\|.+?\|\s*(\d+)/(\d+)")


def is_mp4(data: bytes) -> bool:
    return data[4:8] == b"ftyp"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG
    return struct.unpack(">II", data[16:24])  # type: ignore[return-value]


async def call(s: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any, Any]:
    """Status, body (JSON when it parses, else bytes) and headers."""
    async with s.request(method, url, **kw) as resp:
        raw = await resp.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        return resp.status, body, resp.headers


# ---- fal ---------------------------------------------------------------------------------------------------
async def fal_submit(s: aiohttp.ClientSession, emu: Emulator, model: str, body: dict[str, Any]) -> dict[str, Any]:
    status, submitted, headers = await call(s, "POST", f"{emu.url}/{model}", json=body, headers=FAL)
    assert status == 200, submitted
    assert headers["x-fal-request-id"] == submitted["request_id"]
    return submitted  # type: ignore[no-any-return]


async def test_fal_video_queue_positions_logs_result_and_mp4(fal_emulator: FalEmulator) -> None:
    emu = fal_emulator
    async with aiohttp.ClientSession() as s:
        sub = await fal_submit(s, emu, "fal-ai/veo3/fast", {"prompt": "a fox [[polls:4]]", "aspect_ratio": "9:16"})
        base = f"{emu.url}/fal-ai/veo3/requests/{sub['request_id']}"  # the subpath is dropped
        assert (sub["response_url"], sub["status_url"], sub["cancel_url"]) == (base, f"{base}/status", f"{base}/cancel")
        assert sub["status"] == "IN_QUEUE" and sub["queue_position"] == 4
        polls = [(await call(s, "GET", sub["status_url"], params=query, headers=FAL))[1]
                 for query in ({"logs": "1"}, {}, {"logs": "true"}, {"logs": "1"})]
        assert [p["status"] for p in polls] == ["IN_QUEUE", "IN_PROGRESS", "IN_PROGRESS", "COMPLETED"]
        assert polls[0]["queue_position"] == 3 and "logs" not in polls[0]
        assert polls[1]["logs"] is None  # not asked for: null, but the key is there (fal_client requires it)
        assert [log["message"] for log in polls[2]["logs"]] == ["Step 1/4", "Step 2/4", "Step 3/4"]
        assert polls[3]["error"] is None and polls[3]["error_type"] is None and polls[3]["metrics"]["inference_time"]
        _, result, _ = await call(s, "GET", sub["response_url"], headers=FAL)
        video = result["video"]
        assert video["content_type"] == "video/mp4" and "9x16" in video["url"] and video["file_name"].endswith(".mp4")
        _, data, _ = await call(s, "GET", video["url"])
        assert is_mp4(data) and video["file_size"] == len(data)
    submit = emu.requests[0]
    assert (submit.step, submit.method, submit.path) == ("submit", "POST", "/fal-ai/veo3/fast")
    assert submit.headers["Authorization"] == "Key test-key"
    assert submit.body == {"prompt": "a fox [[polls:4]]", "aspect_ratio": "9:16"}
    assert emu.requests[2].query == {} and emu.requests[3].query == {"logs": "true"}
    assert emu.calls == {"submit": 1, "status": 4, "result": 1, "content": 1}
    job = emu.jobs[sub["request_id"]]
    assert (job.status, job.polls, job.cancelled, job.payload["aspect_ratio"]) == ("done", 4, False, "9:16")


async def test_fal_image_honours_num_images_and_image_size() -> None:
    async with FalEmulator(polls_to_complete=1) as emu, aiohttp.ClientSession() as s:
        sub = await fal_submit(s, emu, "fal-ai/flux/dev", {"prompt": "a fox", "num_images": 3,
                                                           "image_size": "landscape_16_9", "seed": 7})
        assert (await call(s, "GET", sub["status_url"], headers=FAL))[1]["status"] == "COMPLETED"
        _, result, _ = await call(s, "GET", sub["response_url"], headers=FAL)
        assert len(result["images"]) == 3 and result["has_nsfw_concepts"] == [False] * 3
        assert (result["seed"], result["prompt"]) == (7, "a fox")
        first = result["images"][0]
        _, data, _ = await call(s, "GET", first["url"])
        assert png_size(data) == (first["width"], first["height"]) == image_dims(1024, 576)


async def test_fal_auth_and_validation_bodies(fal_emulator: FalEmulator) -> None:
    emu = fal_emulator
    url = f"{emu.url}/fal-ai/flux/dev"
    async with aiohttp.ClientSession() as s:
        status, body, _ = await call(s, "POST", url, json={"prompt": "x"}, headers=BEARER)  # wrong scheme
        assert status == 401 and isinstance(body["detail"], str)
        status, body, _ = await call(s, "POST", url, json={"prompt": "x"}, headers={"Authorization": "Key nope"})
        assert (status, body) == (401, {"detail": "No user found for Key ID and Secret"})
        status, body, _ = await call(s, "POST", url, json={"image_size": "square"}, headers=FAL)
        assert status == 422
        assert body["detail"][0] | {"url": None} == {"loc": ["body", "prompt"], "msg": "field required",
                                                     "type": "missing", "url": None}
        emu.inject(Fault.BAD_REQUEST)
        status, body, headers = await call(s, "POST", url, json={"prompt": "x"}, headers=FAL)
        assert status == 422 and body["detail"][0]["type"] == "value_error" and headers["X-Fal-Retryable"] == "false"
    assert emu.jobs == {} and emu.calls["submit"] == 4


async def test_fal_failed_jobs_report_completed_then_the_result_is_the_error(fal_emulator: FalEmulator) -> None:
    emu = fal_emulator
    emu.inject(Fault.JOB_FAILED)  # attaches to the next job created
    async with aiohttp.ClientSession() as s:
        failed = await fal_submit(s, emu, "fal-ai/veo3", {"prompt": "x [[polls:1]]"})
        flagged = await fal_submit(s, emu, "fal-ai/veo3", {"prompt": "x [[fault:content_policy]] [[polls:1]]"})
        empty = await fal_submit(s, emu, "fal-ai/veo3", {"prompt": "x [[fault:empty_result]] [[polls:1]]"})
        statuses = [(await call(s, "GET", job["status_url"], headers=FAL))[1] for job in (failed, flagged, empty)]
        assert [(p["status"], p["error_type"]) for p in statuses] == [
            ("COMPLETED", "runner_server_error"), ("COMPLETED", "content_policy_violation"), ("COMPLETED", None)]
        assert statuses[1]["error"]
        status, body, headers = await call(s, "GET", failed["response_url"], headers=FAL)
        assert status == 500 and body["error_type"] == headers["X-Fal-Error-Type"] == "runner_server_error"
        status, body, _ = await call(s, "GET", flagged["response_url"], headers=FAL)
        assert status == 422 and body["detail"][0]["type"] == "content_policy_violation"
        assert "[[fault:content_policy]]" in body["detail"][0]["input"]
        assert (await call(s, "GET", empty["response_url"], headers=FAL))[:2] == (200, {"video": None})


async def test_fal_cancel_states_and_foreign_app_paths(fal_emulator: FalEmulator) -> None:
    emu = fal_emulator
    async with aiohttp.ClientSession() as s:
        running = await fal_submit(s, emu, "fal-ai/kling-video/v2/master", {"prompt": "x [[polls:3]]"})
        assert (await call(s, "PUT", running["cancel_url"], headers=FAL))[:2] == (
            202, {"status": "CANCELLATION_REQUESTED"})
        assert emu.jobs[running["request_id"]].cancelled
        _, polled, _ = await call(s, "GET", running["status_url"], headers=FAL)
        assert (polled["status"], polled["error_type"]) == ("COMPLETED", "client_cancelled")
        status, body, _ = await call(s, "GET", running["response_url"], headers=FAL)
        assert (status, body["error_type"]) == (499, "client_cancelled")
        done = await fal_submit(s, emu, "fal-ai/kling-video/v2/master", {"prompt": "x [[polls:1]]"})
        await call(s, "GET", done["status_url"], headers=FAL)
        status, body, _ = await call(s, "PUT", done["cancel_url"], headers=FAL)
        assert (status, body) == (400, {"status": "ALREADY_COMPLETED"})
        status, body, _ = await call(s, "PUT", f"{emu.url}/fal-ai/kling-video/requests/nope/cancel", headers=FAL)
        assert (status, body) == (404, {"status": "NOT_FOUND"})
        # A request id is only known under its own app.
        status, _, _ = await call(s, "GET", f"{emu.url}/fal-ai/flux/requests/{done['request_id']}/status", headers=FAL)
        assert status == 404
        flow = await fal_submit(s, emu, "workflows/me/my-flow", {"prompt": "x"})
        assert flow["status_url"].startswith(f"{emu.url}/workflows/me/my-flow/requests/")
        assert (await call(s, "GET", flow["status_url"], headers=FAL))[0] == 200


async def test_fal_in_band_rate_limit_at_status_and_server_error_at_any_step(fal_emulator: FalEmulator) -> None:
    emu = fal_emulator
    async with aiohttp.ClientSession() as s:
        sub = await fal_submit(s, emu, "fal-ai/veo3", {"prompt": "x [[fault:rate_limit@status]]"})
        for _ in range(2):  # in-band: every poll of that prompt's job
            status, body, headers = await call(s, "GET", sub["status_url"], headers=FAL)
            assert status == 429 and headers["Retry-After"] == "1" and headers["x-fal-request-id"] == sub["request_id"]
        emu.inject(Fault.SERVER_ERROR, step="*")
        status, body, headers = await call(s, "GET", sub["response_url"], headers=FAL)
        assert status == 500 and body["error_type"] == headers["X-Fal-Error-Type"] == "internal_error"
    assert emu.jobs[sub["request_id"]].polls == 0  # refused polls do not advance the job


# ---- OpenAI images ---------------------------------------------------------------------------------------
async def test_openai_images_url_b64_revised_prompt_and_n(openai_emulator: OpenAIEmulator) -> None:
    emu = openai_emulator
    url = f"{emu.url}/v1/images/generations"
    async with aiohttp.ClientSession() as s:
        status, body, headers = await call(s, "POST", url, headers=BEARER, json={
            "model": "dall-e-3", "prompt": "a fox", "size": "1024x1792", "quality": "hd"})
        assert status == 200 and headers["x-request-id"] == "req_img_1"
        (item,) = body["data"]
        assert item["revised_prompt"] and "b64_json" not in item
        assert png_size((await call(s, "GET", item["url"]))[1]) == image_dims(1024, 1792)
        _, body, _ = await call(s, "POST", url, headers=BEARER, json={
            "model": "dall-e-2", "prompt": "a fox", "n": 2, "response_format": "b64_json", "size": "256x256"})
        assert [base64.b64decode(i["b64_json"])[:8] for i in body["data"]] == [PNG, PNG]
        assert "revised_prompt" not in body["data"][0]
        _, body, _ = await call(s, "POST", url, headers=BEARER, json={"model": "gpt-image-1", "prompt": "a fox"})
        assert base64.b64decode(body["data"][0]["b64_json"])[:8] == PNG  # gpt-image: always b64_json
        assert (body["output_format"], body["size"]) == ("png", "1024x1024") and body["usage"]["total_tokens"]
        status, body, _ = await call(s, "POST", url, headers=BEARER, json={"model": "dall-e-3"})
        assert status == 400
        assert (body["error"]["param"], body["error"]["code"]) == ("prompt", "missing_required_parameter")


async def test_openai_image_edits_are_multipart_with_files_recorded(openai_emulator: OpenAIEmulator) -> None:
    emu = openai_emulator
    form = aiohttp.FormData()
    form.add_field("model", "gpt-image-1")
    form.add_field("prompt", "add a hat")
    for name in ("a.png", "b.png"):
        form.add_field("image[]", PNG + b"-input", filename=name, content_type="image/png")
    form.add_field("mask", PNG, filename="mask.png", content_type="image/png")
    async with aiohttp.ClientSession() as s:
        status, body, _ = await call(s, "POST", f"{emu.url}/v1/images/edits", data=form, headers=BEARER)
        assert status == 200 and base64.b64decode(body["data"][0]["b64_json"])[:8] == PNG
        no_image = aiohttp.FormData({"model": "gpt-image-1", "prompt": "add a hat"}, default_to_multipart=True)
        status, body, _ = await call(s, "POST", f"{emu.url}/v1/images/edits", headers=BEARER, data=no_image)
        assert status == 400 and body["error"]["param"] == "image"
        status, body, _ = await call(s, "POST", f"{emu.url}/v1/images/edits", headers=BEARER, json={"prompt": "x"})
        assert status == 400 and "multipart/form-data" in body["error"]["message"]
    edit = emu.requests[0].body
    assert [f["filename"] for f in edit["image[]"]] == ["a.png", "b.png"] and edit["image[]"][0]["bytes"] == 14
    assert edit["mask"] == {"filename": "mask.png", "bytes": 8, "content_type": "image/png"}


async def test_openai_image_moderation_empty_result_and_auth(openai_emulator: OpenAIEmulator) -> None:
    emu = openai_emulator
    url = f"{emu.url}/v1/images/generations"
    async with aiohttp.ClientSession() as s:
        emu.inject(Fault.CONTENT_POLICY)
        status, body, _ = await call(s, "POST", url, headers=BEARER, json={"model": "dall-e-3", "prompt": "x"})
        assert status == 400 and body["error"]["code"] == "content_policy_violation"
        status, body, _ = await call(s, "POST", url, headers=BEARER,
                                     json={"model": "gpt-image-1", "prompt": "x [[fault:content_policy]]"})
        assert status == 400 and (body["error"]["type"], body["error"]["code"]) == (
            "image_generation_user_error", "moderation_blocked")
        emu.inject(Fault.EMPTY_RESULT)
        status, body, _ = await call(s, "POST", url, headers=BEARER, json={"prompt": "x"})
        assert status == 200 and body["data"] == []
        status, body, _ = await call(s, "POST", url, json={"prompt": "x"})
        assert status == 401 and body["error"]["message"].startswith("You didn't provide an API key")
        secret = "sk-canary-never-leak-0123456789abcdef"
        status, body, _ = await call(s, "POST", url, json={"prompt": "x"},
                                     headers={"Authorization": f"Bearer {secret}"})
        error = body["error"]
        assert status == 401 and error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
        assert "sk-canar" in error["message"] and secret not in error["message"]


# ---- OpenAI Sora ------------------------------------------------------------------------------------------
async def sora_poll(s: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> tuple[dict[str, Any], Any]:
    status, body, response_headers = await call(s, "GET", url, headers=headers)
    assert status == 200, body
    return body, response_headers


async def test_sora_multipart_create_progress_content_list_and_delete(openai_emulator: OpenAIEmulator) -> None:
    emu = openai_emulator
    form = aiohttp.FormData()
    for name, value in (("model", "sora-2"), ("prompt", "a fox [[polls:4]]"), ("seconds", "8"), ("size", "1280x720")):
        form.add_field(name, value)
    form.add_field("input_reference", PNG, filename="frame.png", content_type="image/png")
    async with aiohttp.ClientSession() as s:
        status, video, headers = await call(s, "POST", f"{emu.url}/v1/videos", data=form, headers=BEARER)
        assert status == 200 and video["id"].startswith("video_") and headers["x-request-id"].startswith("req_vid_")
        assert (video["object"], video["status"], video["progress"], video["seconds"], video["size"]) == (
            "video", "queued", 0, "8", "1280x720")
        url = f"{emu.url}/v1/videos/{video['id']}"
        polls = [await sora_poll(s, url, BEARER) for _ in range(4)]
        assert [(v["status"], v["progress"]) for v, _ in polls] == [
            ("queued", 0), ("in_progress", 50), ("in_progress", 75), ("completed", 100)]
        assert [h.get("openai-poll-after-ms") for _, h in polls] == ["10", "10", "10", None]
        assert polls[-1][0]["completed_at"] and polls[-1][0]["error"] is None
        status, data, headers = await call(s, "GET", f"{url}/content",
                                           headers={**BEARER, "Accept": "application/binary"})
        assert status == 200 and headers["Content-Type"] == "video/mp4" and is_mp4(data)
        status, data, _ = await call(s, "GET", f"{url}/content", params={"variant": "thumbnail"}, headers=BEARER)
        assert status == 200 and data[:8] == PNG
        _, listed, _ = await call(s, "GET", f"{emu.url}/v1/videos", headers=BEARER)
        assert listed["object"] == "list" and [v["id"] for v in listed["data"]] == [video["id"]]
        assert not listed["has_more"]
        status, body, _ = await call(s, "DELETE", url, headers=BEARER)
        assert (status, body) == (200, {"id": video["id"], "deleted": True, "object": "video.deleted"})
        status, body, _ = await call(s, "GET", url, headers=BEARER)
        assert status == 404 and body["error"]["code"] == "video_not_found"
    assert emu.requests[0].body == {
        "model": "sora-2", "prompt": "a fox [[polls:4]]", "seconds": "8", "size": "1280x720",
        "input_reference": {"filename": "frame.png", "bytes": 8, "content_type": "image/png"}}
    assert emu.jobs[video["id"]].cancelled and emu.calls["cancel"] == 1 and emu.calls["result"] == 2


async def test_sora_json_create_validation_failures_and_drop(openai_emulator: OpenAIEmulator) -> None:
    emu = openai_emulator
    url = f"{emu.url}/v1/videos"
    async with aiohttp.ClientSession() as s:
        status, body, _ = await call(s, "POST", url, headers=BEARER, json={"prompt": "x", "seconds": "10"})
        assert status == 400 and body["error"]["param"] == "seconds"
        assert body["error"]["message"] == "Invalid value: '10'. Supported values are: '4', '8', and '12'."
        _, pending, _ = await call(s, "POST", url, headers=BEARER, json={"prompt": "x", "size": "720x1280"})
        status, body, _ = await call(s, "GET", f"{url}/{pending['id']}/content", headers=BEARER)
        assert status == 404 and body["error"]["code"] == "video_not_ready"
        emu.inject(Fault.JOB_FAILED)
        _, failed, _ = await call(s, "POST", url, headers=BEARER, json={"prompt": "x [[polls:1]]"})
        _, flagged, _ = await call(s, "POST", url, headers=BEARER,
                                   json={"prompt": "x [[polls:1]] [[fault:content_policy]]"})
        errors = [(await sora_poll(s, f"{url}/{v['id']}", BEARER))[0] for v in (failed, flagged)]
        assert [(v["status"], v["error"]["code"]) for v in errors] == [
            ("failed", "video_generation_failed"), ("failed", "moderation_blocked")]
        assert (await call(s, "GET", f"{url}/{failed['id']}/content", headers=BEARER))[0] == 404
        emu.inject(Fault.DROP, step="status")
        with pytest.raises(aiohttp.ClientError):
            await call(s, "GET", f"{url}/{pending['id']}", headers=BEARER)
        status, body, _ = await call(s, "GET", f"{emu.url}/v1/nope", headers=BEARER)
        assert status == 404 and body["error"]["message"] == "Invalid URL (GET /v1/nope)"
    assert emu.calls["unmatched"] == 1


# ---- Azure OpenAI -----------------------------------------------------------------------------------------
async def test_azure_deployment_images_need_api_version_and_use_azure_bodies(azure_openai_emulator: Emulator) -> None:
    emu = azure_openai_emulator
    deployment = f"{emu.url}/openai/deployments/my-dalle/images/generations"
    async with aiohttp.ClientSession() as s:
        status, body, _ = await call(s, "POST", deployment, headers=AZURE, json={"prompt": "x"})
        assert (status, body) == (404, {"error": {"code": "404", "message": "Resource not found"}})
        status, body, headers = await call(s, "POST", deployment, params={"api-version": "2024-02-01"}, headers=AZURE,
                                           json={"prompt": "a fox", "size": "1792x1024"})
        assert status == 200 and body["data"][0]["url"].startswith(emu.url) and headers["apim-request-id"]
        status, body, _ = await call(s, "POST", f"{emu.url}/openai/v1/images/generations", headers=AZURE,
                                     json={"model": "gpt-image-1", "prompt": "a fox"})
        assert status == 200 and base64.b64decode(body["data"][0]["b64_json"])[:8] == PNG
        status, body, _ = await call(s, "POST", deployment, params={"api-version": "2024-02-01"}, headers=BEARER,
                                     json={"prompt": "x"})
        assert status == 401 and body["error"]["code"] == "401" and "subscription key" in body["error"]["message"]
        status, body, _ = await call(s, "POST", deployment, params={"api-version": "2024-02-01"}, headers=AZURE,
                                     json={"prompt": "x [[fault:content_policy]]"})
        assert status == 400 and body["error"]["code"] == "content_policy_violation"
        assert body["error"]["inner_error"]["code"] == "ResponsibleAIPolicyViolation"
        emu.inject(Fault.MALFORMED_JSON)
        status, raw, headers = await call(s, "POST", deployment, params={"api-version": "2024-02-01"}, headers=AZURE,
                                          json={"prompt": "x"})
        assert status == 200 and headers["Content-Type"].startswith("application/json") and isinstance(raw, bytes)
    submit = next(r for r in emu.requests if r.query)
    assert submit.path == "/openai/deployments/my-dalle/images/generations"
    assert submit.query == {"api-version": "2024-02-01"} and submit.headers["api-key"] == KEY


async def test_azure_sora_on_the_v1_api(azure_openai_emulator: Emulator) -> None:
    emu = azure_openai_emulator
    async with aiohttp.ClientSession() as s:
        _, video, _ = await call(s, "POST", f"{emu.url}/openai/v1/videos", headers=AZURE,
                                 json={"model": "sora-2", "prompt": "x [[polls:1]]", "size": "720x1280"})
        url = f"{emu.url}/openai/v1/videos/{video['id']}"
        assert (await sora_poll(s, url, AZURE))[0]["status"] == "completed"
        status, data, _ = await call(s, "GET", f"{url}/content", headers=AZURE)
        assert status == 200 and is_mp4(data)
        status, body, _ = await call(s, "GET", f"{emu.url}/v1/videos/{video['id']}", headers=AZURE)  # OpenAI's path
        assert (status, body["error"]["code"]) == (404, "404")


# ---- Replicate --------------------------------------------------------------------------------------------
async def test_replicate_video_model_progress_in_logs_and_mp4(replicate_emulator: ReplicateEmulator) -> None:
    emu = replicate_emulator
    async with aiohttp.ClientSession() as s:
        status, created, _ = await call(s, "POST", f"{emu.url}/v1/models/google/veo-3/predictions", headers=BEARER,
                                        json={"input": {"prompt": "a fox [[polls:4]]", "aspect_ratio": "16:9"}})
        assert status == 201 and (created["status"], created["logs"], created["output"]) == ("starting", "", None)
        assert created["urls"]["get"] == f"{emu.url}/v1/predictions/{created['id']}"
        polls = [(await call(s, "GET", created["urls"]["get"], headers=BEARER))[1] for _ in range(4)]
        assert [p["status"] for p in polls] == ["starting", "processing", "processing", "succeeded"]
        progress = [int(TQDM.findall(p["logs"].strip().splitlines()[-1])[0][0]) for p in polls]
        assert progress == [25, 50, 75, 100]
        done = polls[-1]
        assert done["completed_at"] and done["metrics"]["predict_time"] > 0 and done["error"] is None
        assert isinstance(done["output"], str) and is_mp4((await call(s, "GET", done["output"]))[1])
    assert emu.requests[0].body == {"input": {"prompt": "a fox [[polls:4]]", "aspect_ratio": "16:9"}}


async def test_replicate_version_prefer_wait_and_token_auth(replicate_emulator: ReplicateEmulator) -> None:
    emu = replicate_emulator
    version = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
    token = {"Authorization": f"Token {KEY}"}
    async with aiohttp.ClientSession() as s:
        pinned = {"version": f"stability-ai/sdxl:{version}", "input": {"prompt": "x [[polls:1]]", "num_outputs": 2}}
        status, body, headers = await call(s, "POST", f"{emu.url}/v1/predictions", json=pinned,
                                           headers={**token, "Prefer": "wait=10"})
        assert status == 201 and headers["Preference-Applied"] == "wait=10" and body["status"] == "succeeded"
        assert (body["model"], body["version"]) == ("stability-ai/sdxl", version)
        assert [png_size((await call(s, "GET", u))[1]) for u in body["output"]] == [image_dims(1, 1)] * 2
        _, body, _ = await call(s, "POST", f"{emu.url}/v1/models/black-forest-labs/flux-dev/predictions",
                                headers={**BEARER, "Prefer": "wait"}, json={"input": {"prompt": "x"}})
        assert body["status"] == "processing"  # the wait stood for one poll; the job needs two
    assert emu.calls["status"] == 0


async def test_replicate_auth_validation_and_rate_limit_bodies(replicate_emulator: ReplicateEmulator) -> None:
    emu = replicate_emulator
    url = f"{emu.url}/v1/models/google/veo-3/predictions"
    async with aiohttp.ClientSession() as s:
        status, body, headers = await call(s, "POST", url, json={"input": {"prompt": "x"}})
        assert status == 401 and headers["Content-Type"].startswith("application/problem+json")
        assert body == {"title": "Unauthenticated", "detail": "You did not pass an authentication token", "status": 401}
        status, body, _ = await call(s, "POST", url, json={"input": {"prompt": "x"}},
                                     headers={"Authorization": "Bearer no"})
        assert body["detail"] == "You did not pass a valid authentication token"
        emu.inject(Fault.AUTH)
        assert (await call(s, "POST", url, json={"input": {"prompt": "x"}}, headers=BEARER))[0] == 401
        status, body, _ = await call(s, "POST", url, json={"input": {"aspect_ratio": "16:9"}}, headers=BEARER)
        assert (status, body["title"]) == (422, "Input validation failed")
        assert body["detail"] == "- input: prompt is required\n"
        assert body["invalid_fields"] == [{"type": "required", "field": "input", "description": "prompt is required"}]
        status, body, _ = await call(s, "POST", f"{emu.url}/v1/predictions", json={"input": {"prompt": "x"}},
                                     headers=BEARER)
        assert (status, body["detail"]) == (422, "- version is required\n")
        emu.inject(Fault.RATE_LIMIT)
        status, body, headers = await call(s, "POST", url, json={"input": {"prompt": "x"}}, headers=BEARER)
        assert status == 429 and headers["Retry-After"] == "1" and body["status"] == 429
    assert emu.jobs == {}


async def test_replicate_failures_cancel_and_hang(replicate_emulator: ReplicateEmulator) -> None:
    emu = replicate_emulator
    url = f"{emu.url}/v1/models/black-forest-labs/flux-dev/predictions"
    async with aiohttp.ClientSession() as s:
        _, flagged, _ = await call(s, "POST", url, headers=BEARER,
                                   json={"input": {"prompt": "x [[fault:content_policy]] [[polls:1]]"}})
        emu.inject(Fault.EMPTY_RESULT)
        _, empty, _ = await call(s, "POST", url, headers=BEARER, json={"input": {"prompt": "x [[polls:1]]"}})
        _, flagged, _ = await call(s, "GET", flagged["urls"]["get"], headers=BEARER)
        _, empty, _ = await call(s, "GET", empty["urls"]["get"], headers=BEARER)
        assert (flagged["status"], empty["status"], empty["output"]) == ("failed", "succeeded", None)
        assert "NSFW" in flagged["error"]
        _, finished, _ = await call(s, "POST", empty["urls"]["cancel"], headers=BEARER)
        assert finished["status"] == "succeeded"  # a finished prediction stays as it ended
        _, slow, _ = await call(s, "POST", url, headers=BEARER, json={"input": {"prompt": "x [[polls:5]]"}})
        _, canceled, _ = await call(s, "POST", slow["urls"]["cancel"], headers=BEARER)
        assert canceled["status"] == "canceled" and canceled["completed_at"]
        assert (await call(s, "GET", slow["urls"]["get"], headers=BEARER))[1]["status"] == "canceled"
        assert emu.jobs[slow["id"]].cancelled and emu.jobs[slow["id"]].polls == 0
        emu.inject(Fault.HANG, step="status")
        started = time.perf_counter()
        with pytest.raises(asyncio.TimeoutError):
            await call(s, "GET", slow["urls"]["get"], headers=BEARER, timeout=aiohttp.ClientTimeout(total=0.2))
        assert time.perf_counter() - started < 1
    started = time.perf_counter()
    await emu.close()  # the hung handler is released at once
    assert time.perf_counter() - started < 1


# ---- the base ---------------------------------------------------------------------------------------------
async def test_injected_faults_count_their_times_at_any_step() -> None:
    async with FalEmulator() as emu, aiohttp.ClientSession() as s:
        emu.inject(Fault.UNAVAILABLE, step="*", times=2)
        status, _, _ = await call(s, "POST", f"{emu.url}/fal-ai/flux/dev", json={"prompt": "x"},
                                  headers={"Authorization": "Key no"})
        assert status == 401  # a refused key consumes no fault
        status, body, _ = await call(s, "POST", f"{emu.url}/fal-ai/flux/dev", json={"prompt": "x"}, headers=FAL)
        assert status == 503 and body["error_type"] == "runner_scheduling_failure"
        status, _, _ = await call(s, "GET", f"{emu.url}/fal-ai/flux/requests/nope/status", headers=FAL)
        assert status == 503
        sub = await fal_submit(s, emu, "fal-ai/flux/dev", {"prompt": "x"})
        assert sub["request_id"] in emu.jobs


def test_peak_in_flight_counts_jobs_queued_or_running_when_each_is_submitted() -> None:
    emu = FalEmulator(polls_to_complete=2)
    first, second = (emu.new_job("fal-ai/veo3", {}, "x") for _ in range(2))
    assert emu.peak_in_flight == 2
    first.advance(), first.advance()  # done by polls
    second.cancelled = True
    emu.new_job("fal-ai/veo3", {}, "x [[polls:0]]")  # done at once: never in flight
    third = emu.new_job("fal-ai/veo3", {}, "x")
    del emu.jobs[third.id]
    third.id = "renamed"  # vendors with their own id style re-id a new job (luma, stability)
    emu.jobs[third.id] = third
    emu.new_job("fal-ai/veo3", {}, "x")
    assert emu.peak_in_flight == 2  # third and the last; first and second had settled
    third.polls_needed = 0  # a test finishing a job by hand
    for _ in range(3):
        emu.new_job("fal-ai/veo3", {}, "x")
    assert emu.peak_in_flight == 4


async def test_in_band_fault_at_the_content_step_cuts_the_media_download(fal_emulator: FalEmulator) -> None:
    emu = fal_emulator
    async with aiohttp.ClientSession() as s:
        sub = await fal_submit(s, emu, "fal-ai/veo3", {"prompt": "x [[polls:1]] [[fault:drop@content]]"})
        await call(s, "GET", sub["status_url"], headers=FAL)
        _, result, _ = await call(s, "GET", sub["response_url"], headers=FAL)
        with pytest.raises(aiohttp.ClientError):
            await call(s, "GET", result["video"]["url"])
        status, _, _ = await call(s, "GET", f"{emu.url}/nope")
        assert status == 405  # fal takes any POST path as a model id; the vendor's body either way
    assert emu.calls["content"] == 1 and emu.calls["unmatched"] == 1


async def test_cli_runs_one_emulator_in_the_foreground() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.emulators", "replicate", "--port", "0", "--key", "k", "--polls", "3",
        stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        async with aiohttp.ClientSession() as s:
            status, body, _ = await call(s, "POST", f"{url[0]}/v1/models/google/veo-3/predictions",
                                         headers={"Authorization": "Bearer k"}, json={"input": {"prompt": "x"}})
            assert status == 201
            status, stats, _ = await call(s, "GET", f"{url[0]}/_emulator/stats")
            assert stats == {"calls": {"submit": 1}, "jobs": 1, "repeated_submits": {}}
    finally:
        process.terminate()
        await process.wait()


async def test_submits_are_counted_per_request_body() -> None:
    """A client's job sends the same body each time it submits: a body seen twice is a job submitted twice."""
    async with FalEmulator(api_key=KEY) as emu, aiohttp.ClientSession() as s:
        for prompt in ("once", "twice", "twice"):
            status, _, _ = await call(s, "POST", f"{emu.url}/fal-ai/veo3", headers=FAL, json={"prompt": prompt})
            assert status == 200
        assert emu.submits_of({"prompt": "once"}) == 1 and emu.submits_of({"prompt": "twice"}) == 2
        _, stats, _ = await call(s, "GET", f"{emu.url}/_emulator/stats")
        assert stats["repeated_submits"] == {'{"prompt": "twice"}': 2} == emu.repeated_submits()
