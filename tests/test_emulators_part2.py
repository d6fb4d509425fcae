"""Runway, Google (Gemini API + Vertex AI + token endpoints), Stability and Luma emulators, driven with raw aiohttp.

Each HTTP fault of the base menu is exercised at least once across this file: rate_limit (Runway), server_error
(Runway, in-band), unavailable (Luma), hang (Google), malformed_json (Stability), drop (Luma), auth (Stability),
bad_request (Luma); and each job outcome: content_policy, job_failed, empty_result.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import aiohttp
import pytest

from providers._mock_media import png_bytes
from tests.emulators._base import Fault
from tests.emulators.google import GoogleEmulator
from tests.emulators.luma import LumaEmulator
from tests.emulators.runway import RunwayEmulator
from tests.emulators.stability import StabilityEmulator

KEY = "test-key"
PNG = b"\x89PNG\r\n\x1a\n"
PNG_URI = "data:image/png;base64," + base64.b64encode(png_bytes(8, 8)).decode()


def is_mp4(data: bytes) -> bool:
    return data[4:8] == b"ftyp"


async def fetch(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


# ---- Runway ------------------------------------------------------------------------------------------------
RUNWAY_HEADERS = {"Authorization": f"Bearer {KEY}", "X-Runway-Version": "2024-11-06"}


async def runway_submit(s: aiohttp.ClientSession, emu: RunwayEmulator, endpoint: str, body: dict[str, Any],
                        headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    return await s.post(f"{emu.url}/v1/{endpoint}", json=body, headers=headers or RUNWAY_HEADERS)


async def runway_task(s: aiohttp.ClientSession, emu: RunwayEmulator, task_id: str) -> tuple[int, dict[str, Any]]:
    async with s.get(f"{emu.url}/v1/tasks/{task_id}", headers=RUNWAY_HEADERS) as resp:
        return resp.status, await resp.json()


async def test_runway_image_to_video_progresses_per_poll_to_real_mp4() -> None:
    async with RunwayEmulator(polls_to_complete=3) as emu, aiohttp.ClientSession() as s:
        body = {"model": "gen4_turbo", "promptImage": PNG_URI, "promptText": "slow dolly in", "ratio": "720:1280",
                "duration": 5, "seed": 42}
        async with await runway_submit(s, emu, "image_to_video", body) as resp:
            assert resp.status == 200
            task_id = (await resp.json())["id"]
        statuses = [await runway_task(s, emu, task_id) for _ in range(3)]
        assert [t["status"] for _, t in statuses] == ["PENDING", "RUNNING", "SUCCEEDED"]
        running = statuses[1][1]
        assert 0 < running["progress"] < 1 and running["createdAt"].endswith("Z")
        output = statuses[2][1]["output"]
        assert len(output) == 1 and "9x16" in output[0]  # portrait ratio -> the portrait sample
        assert is_mp4(await fetch(s, output[0]))
        submit = emu.requests[0]
        assert submit.path == "/v1/image_to_video" and submit.headers["X-Runway-Version"] == "2024-11-06"
        assert submit.body["promptImage"] == PNG_URI


async def test_runway_text_to_image_and_veo_first_last_frames() -> None:
    async with RunwayEmulator(polls_to_complete=1) as emu, aiohttp.ClientSession() as s:
        async with await runway_submit(s, emu, "text_to_image", {"model": "gen4_image", "promptText": "a fox",
                                                                 "ratio": "1024:1024"}) as resp:
            task_id = (await resp.json())["id"]
        _, task = await runway_task(s, emu, task_id)
        assert task["status"] == "SUCCEEDED" and (await fetch(s, task["output"][0])).startswith(PNG)
        frames = [{"uri": PNG_URI, "position": "first"}, {"uri": "https://example.com/end.png", "position": "last"}]
        async with await runway_submit(s, emu, "image_to_video", {"model": "veo3.1", "promptImage": frames,
                                                                  "ratio": "1920:1080", "duration": 8}) as resp:
            assert resp.status == 200
        async with await runway_submit(s, emu, "image_to_video", {"model": "gen4_turbo", "promptImage": frames,
                                                                  "ratio": "1280:720"}) as resp:
            assert resp.status == 400  # gen4_turbo takes a first frame only
            assert (await resp.json())["issues"][0]["path"] == ["promptImage"]


async def test_runway_version_header_key_and_validation_errors() -> None:
    async with RunwayEmulator() as emu, aiohttp.ClientSession() as s:
        body = {"model": "gen4.5", "promptText": "a fox", "ratio": "1280:720", "duration": 5}
        for headers in ({"Authorization": f"Bearer {KEY}"}, {**RUNWAY_HEADERS, "X-Runway-Version": "v1"}):
            async with await runway_submit(s, emu, "text_to_video", body, headers) as resp:
                assert resp.status == 400
                assert "X-Runway-Version" in (await resp.json())["error"]
        for auth in ("Bearer wrong", f"Key {KEY}"):
            async with await runway_submit(s, emu, "text_to_video", body,
                                           {**RUNWAY_HEADERS, "Authorization": auth}) as resp:
                assert resp.status == 401 and "error" in await resp.json()
        async with await runway_submit(s, emu, "text_to_video", {**body, "ratio": "16:9"}) as resp:
            error = await resp.json()
            assert resp.status == 400 and error["error"] == "Validation of body failed"
            assert error["issues"][0]["path"] == ["ratio"] and "1280:720" in error["issues"][0]["message"]
        async with await runway_submit(s, emu, "text_to_video", {**body, "model": "gen3a_turbo"}) as resp:
            assert (await resp.json())["issues"][0]["code"] == "invalid_union"
        async with await runway_submit(s, emu, "text_to_video", {"model": "gen4.5", "ratio": "1280:720"}) as resp:
            paths = [issue["path"] for issue in (await resp.json())["issues"]]
            assert ["promptText"] in paths and ["duration"] in paths
        assert emu.jobs == {}


async def test_runway_failure_codes_and_empty_output() -> None:
    async with RunwayEmulator(polls_to_complete=1) as emu, aiohttp.ClientSession() as s:
        emu.inject(Fault.CONTENT_POLICY)
        ids = []
        for prompt in ("a fox", "a fox [[fault:job_failed]]", "a fox [[fault:empty_result]]"):
            async with await runway_submit(s, emu, "text_to_video", {"model": "veo3.1", "promptText": prompt,
                                                                     "ratio": "1280:720"}) as resp:
                ids.append((await resp.json())["id"])
        tasks = [(await runway_task(s, emu, task_id))[1] for task_id in ids]
        assert [t["status"] for t in tasks] == ["FAILED", "FAILED", "SUCCEEDED"]
        assert tasks[0]["failureCode"] == "SAFETY.INPUT.TEXT" and tasks[0]["failure"]
        assert tasks[1]["failureCode"].startswith("INTERNAL.BAD_OUTPUT.")
        assert tasks[2]["output"] == []


async def test_runway_delete_cancels_then_404_throttled_and_cancelled_variants() -> None:
    async with RunwayEmulator(polls_to_complete=4, throttle=True) as emu, aiohttp.ClientSession() as s:
        body = {"model": "gen4.5", "promptText": "a fox", "ratio": "1280:720", "duration": 5}
        async with await runway_submit(s, emu, "text_to_video", body) as resp:
            task_id = (await resp.json())["id"]
        assert (await runway_task(s, emu, task_id))[1]["status"] == "THROTTLED"
        async with s.delete(f"{emu.url}/v1/tasks/{task_id}", headers={**RUNWAY_HEADERS, "Accept": "*/*"}) as resp:
            assert resp.status == 204 and await resp.read() == b""
        assert (await runway_task(s, emu, task_id))[0] == 404
        emu.cancelled_visible = True
        assert (await runway_task(s, emu, task_id))[1]["status"] == "CANCELLED"


async def test_runway_rate_limit_and_in_band_server_error() -> None:
    async with RunwayEmulator(polls_to_complete=1) as emu, aiohttp.ClientSession() as s:
        emu.inject(Fault.RATE_LIMIT, step="submit")
        body = {"model": "veo3", "promptText": "a fox [[fault:server_error@status]]", "ratio": "1280:720",
                "duration": 8}
        async with await runway_submit(s, emu, "text_to_video", body) as resp:
            assert resp.status == 429 and resp.headers["Retry-After"]
            assert "error" in await resp.json()
        async with await runway_submit(s, emu, "text_to_video", body) as resp:
            task_id = (await resp.json())["id"]
        status, error = await runway_task(s, emu, task_id)
        assert status == 500 and "error" in error
        assert emu.calls["submit"] == 2 and emu.calls["status"] == 1


# ---- Google: Gemini API ------------------------------------------------------------------------------------
GEMINI = {"x-goog-api-key": KEY}


def veo_body(prompt: str = "a drone shot over a canyon", **params: Any) -> dict[str, Any]:
    return {"instances": [{"prompt": prompt}], "parameters": {"aspectRatio": "16:9", "durationSeconds": 8, **params}}


async def gemini_start(s: aiohttp.ClientSession, emu: GoogleEmulator, body: dict[str, Any],
                       model: str = "veo-3.0-generate-001") -> str:
    async with s.post(f"{emu.url}/v1beta/models/{model}:predictLongRunning", json=body, headers=GEMINI) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["name"])


async def gemini_poll(s: aiohttp.ClientSession, emu: GoogleEmulator, name: str) -> dict[str, Any]:
    async with s.get(f"{emu.url}/v1beta/{name}", headers=GEMINI) as resp:
        assert resp.status == 200
        return await resp.json()  # type: ignore[no-any-return]


async def test_gemini_veo_operation_to_keyed_download() -> None:
    async with GoogleEmulator() as emu, aiohttp.ClientSession() as s:
        name = await gemini_start(s, emu, veo_body(sampleCount=2))
        assert name.startswith("models/veo-3.0-generate-001/operations/")
        first = await gemini_poll(s, emu, name)
        assert first == {"name": name}  # done is absent while running
        done = await gemini_poll(s, emu, name)
        assert done["done"] is True and "error" not in done
        assert done["response"]["@type"].endswith("PredictLongRunningResponse")
        samples = done["response"]["generateVideoResponse"]["generatedSamples"]
        uri = samples[0]["video"]["uri"]
        assert len(samples) == 2 and uri.endswith(":download?alt=media")
        async with s.get(uri) as resp:  # the file needs the key too
            assert resp.status == 403 and (await resp.json())["error"]["status"] == "PERMISSION_DENIED"
        async with s.get(uri, headers=GEMINI, allow_redirects=False) as resp:
            assert resp.status == 302 and "/_media/" in resp.headers["Location"]
        async with s.get(uri, headers=GEMINI) as resp:
            assert resp.status == 200 and is_mp4(await resp.read())
        emu.download_redirect = False
        assert is_mp4(await fetch(s, f"{uri}&key={KEY}"))  # ?key= works as well as the header


async def test_gemini_auth_errors_are_googles() -> None:
    async with GoogleEmulator() as emu, aiohttp.ClientSession() as s:
        url = f"{emu.url}/v1beta/models/veo-3.0-generate-001:predictLongRunning"
        cases = [({}, 403, "PERMISSION_DENIED"), ({"x-goog-api-key": "wrong"}, 400, "INVALID_ARGUMENT"),
                 ({"Authorization": f"Bearer {KEY}"}, 401, "UNAUTHENTICATED")]
        for headers, status, name in cases:
            async with s.post(url, json=veo_body(), headers=headers) as resp:
                error = (await resp.json())["error"]
                assert (resp.status, error["code"], error["status"]) == (status, status, name)
        async with s.post(f"{url}?key=wrong", json=veo_body()) as resp:
            assert (await resp.json())["error"]["details"][0]["reason"] == "API_KEY_INVALID"
        unknown = f"{emu.url}/v1beta/models/gemini-9:predictLongRunning"
        async with s.post(unknown, json=veo_body(), headers=GEMINI) as resp:
            assert resp.status == 404 and "not found for API version v1beta" in (await resp.json())["error"]["message"]
        for bad in (veo_body(seed=1), veo_body(aspectRatio="1:1"), {"instances": []}):
            async with s.post(url, json=bad, headers=GEMINI) as resp:
                assert resp.status == 400 and (await resp.json())["error"]["status"] == "INVALID_ARGUMENT"


async def test_gemini_rai_filtering_and_operation_error() -> None:
    async with GoogleEmulator(polls_to_complete=1) as emu, aiohttp.ClientSession() as s:
        emu.inject(Fault.CONTENT_POLICY)
        filtered = await gemini_poll(s, emu, await gemini_start(s, emu, veo_body()))
        video = filtered["response"]["generateVideoResponse"]
        assert filtered["done"] and "generatedSamples" not in video
        assert video["raiMediaFilteredCount"] == 1 and video["raiMediaFilteredReasons"]
        failed = await gemini_poll(s, emu, await gemini_start(s, emu, veo_body("x [[fault:job_failed]]")))
        assert failed["done"] and failed["error"]["code"] == 13 and failed["error"]["message"]
        assert "response" not in failed


async def test_gemini_imagen_predict() -> None:
    async with GoogleEmulator() as emu, aiohttp.ClientSession() as s:
        url = f"{emu.url}/v1beta/models/imagen-4.0-generate-001:predict"
        body = {"instances": [{"prompt": "a fox"}], "parameters": {"sampleCount": 2, "aspectRatio": "16:9"}}
        async with s.post(url, json=body, headers=GEMINI) as resp:
            predictions = (await resp.json())["predictions"]
        assert len(predictions) == 2 and predictions[0]["mimeType"] == "image/png"
        assert base64.b64decode(predictions[0]["bytesBase64Encoded"]).startswith(PNG)
        body["parameters"]["includeRaiReason"] = True
        emu.inject(Fault.CONTENT_POLICY)
        async with s.post(url, json=body, headers=GEMINI) as resp:
            assert (await resp.json())["predictions"][0]["raiFilteredReason"]


async def test_google_hang_and_rate_limit_with_retry_info() -> None:
    async with GoogleEmulator() as emu, aiohttp.ClientSession() as s:
        emu.inject(Fault.RATE_LIMIT, step="status")
        name = await gemini_start(s, emu, veo_body())
        async with s.get(f"{emu.url}/v1beta/{name}", headers=GEMINI) as resp:
            error = (await resp.json())["error"]
            assert resp.status == 429 and error["status"] == "RESOURCE_EXHAUSTED"
            assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.RetryInfo"
        emu.inject(Fault.HANG, step="status")
        with pytest.raises(asyncio.TimeoutError):
            async with s.get(f"{emu.url}/v1beta/{name}", headers=GEMINI,
                             timeout=aiohttp.ClientTimeout(total=0.2)):
                pass


# ---- Google: Vertex AI and token endpoints -----------------------------------------------------------------
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assertion(emu: GoogleEmulator, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": emu.service_account_email, "scope": "https://www.googleapis.com/auth/cloud-platform",
               "aud": f"{emu.url}/token", "iat": now, "exp": now + 3600, **claims}
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(payload).encode())}.{b64url(b'not-a-real-signature')}"


async def test_vertex_token_endpoint_and_metadata_server() -> None:
    async with GoogleEmulator(access_token="ya29.first") as emu, aiohttp.ClientSession() as s:
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion(emu)}
        async with s.post(f"{emu.url}/token", data=form) as resp:
            assert await resp.json() == {"access_token": "ya29.first", "expires_in": 3599, "token_type": "Bearer"}
        bad_forms = [{**form, "grant_type": "client_credentials"},
                     {**form, "assertion": assertion(emu, iss="someone@else.iam.gserviceaccount.com")},
                     {**form, "assertion": assertion(emu, exp=int(time.time()) + 7200)},
                     {**form, "assertion": "not.a-jwt"}]
        for bad in bad_forms:
            async with s.post(f"{emu.url}/token", data=bad) as resp:
                error = (await resp.json())["error"]
                assert resp.status == 400 and error in ("invalid_grant", "unsupported_grant_type")
        metadata = f"{emu.url}/computeMetadata/v1/instance/service-accounts/default/token"
        async with s.get(metadata) as resp:
            assert resp.status == 403
        emu.access_token = "ya29.second"
        async with s.get(metadata, headers={"Metadata-Flavor": "Google"}) as resp:
            assert resp.headers["Metadata-Flavor"] == "Google"
            assert (await resp.json())["access_token"] == "ya29.second"
        assert emu.calls["token"] == 7


async def test_vertex_veo_fetch_predict_operation_inline_bytes_and_gcs() -> None:
    async with GoogleEmulator(polls_to_complete=1) as emu, aiohttp.ClientSession() as s:
        base = f"{emu.url}/v1beta1/projects/p1/locations/us-central1/publishers/google/models/veo-3.0-generate-001"
        auth = {"Authorization": f"Bearer {emu.access_token}"}
        vertex_only = veo_body(seed=7, generateAudio=True)  # refused on the Gemini API, fine on Vertex
        async with s.post(f"{base}:predictLongRunning", json=vertex_only, headers=auth) as resp:
            name = (await resp.json())["name"]
        assert name.startswith(base.split("/v1beta1/")[1] + "/operations/")
        async with s.post(f"{base}:fetchPredictOperation", json={"operationName": name}, headers=auth) as resp:
            op = await resp.json()
        assert op["done"] and "generateVideoResponse" not in op["response"]
        video = op["response"]["videos"][0]
        assert video["mimeType"] == "video/mp4" and is_mp4(base64.b64decode(video["bytesBase64Encoded"]))
        to_gcs = veo_body(storageUri="gs://bucket/out/")
        async with s.post(f"{base}:predictLongRunning", json=to_gcs, headers=auth) as resp:
            name = (await resp.json())["name"]
        async with s.post(f"{base}:fetchPredictOperation", json={"operationName": name}, headers=auth) as resp:
            assert (await resp.json())["response"]["videos"][0]["gcsUri"].startswith("gs://bucket/out/")
        unknown = {"operationName": name[:-3] + "zzz"}
        async with s.post(f"{base}:fetchPredictOperation", json=unknown, headers=auth) as resp:
            assert resp.status == 404
        for headers in ({}, {"Authorization": "Bearer expired"}, {"x-goog-api-key": KEY}):
            async with s.post(f"{base}:predictLongRunning", json=veo_body(), headers=headers) as resp:
                assert resp.status == 401 and (await resp.json())["error"]["status"] == "UNAUTHENTICATED"
        imagen = base.replace("veo-3.0-generate-001", "imagen-4.0-generate-001").replace("v1beta1", "v1")
        async with s.post(f"{imagen}:predict", json={"instances": [{"prompt": "a fox"}],
                                                     "parameters": {"sampleCount": 1}}, headers=auth) as resp:
            prediction = (await resp.json())["predictions"][0]
        assert base64.b64decode(prediction["bytesBase64Encoded"]).startswith(PNG)


# ---- Stability -----------------------------------------------------------------------------------------------
def stability_form(fields: dict[str, str], files: dict[str, bytes] | None = None) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)  # text fields alone would go urlencoded: a 400
    for name, value in fields.items():
        form.add_field(name, value)
    for name, data in (files or {}).items():
        form.add_field(name, data, filename=f"{name}.png", content_type="image/png")
    return form


def stability_headers(accept: str = "image/*", key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Accept": accept}


async def test_stability_generate_bytes_and_json() -> None:
    async with StabilityEmulator() as emu, aiohttp.ClientSession() as s:
        url = f"{emu.url}/v2beta/stable-image/generate/core"
        async with s.post(url, data=stability_form({"prompt": "a fox", "aspect_ratio": "16:9", "seed": "5"}),
                          headers=stability_headers()) as resp:
            assert resp.status == 200 and resp.content_type == "image/png"
            assert resp.headers["finish-reason"] == "SUCCESS" and resp.headers["seed"] == "5"
            assert (await resp.read()).startswith(PNG)
        async with s.post(f"{emu.url}/v2beta/stable-image/generate/sd3",
                          data=stability_form({"prompt": "a fox", "mode": "image-to-image", "strength": "0.6",
                                               "model": "sd3.5-large-turbo"}, {"image": png_bytes(16, 16)}),
                          headers=stability_headers("application/json")) as resp:
            assert resp.headers["Content-Type"] == "application/json; type=image/png"
            body = json.loads(await resp.read())
        assert body["finish_reason"] == "SUCCESS" and base64.b64decode(body["image"]).startswith(PNG)
        assert emu.requests[1].body["image"]["bytes"] > 0 and emu.requests[1].body["mode"] == "image-to-image"
        async with s.post(f"{emu.url}/v2beta/stable-image/edit/inpaint",
                          data=stability_form({"prompt": "a hat"},
                                              {"image": png_bytes(16, 16), "mask": png_bytes(16, 16)}),
                          headers=stability_headers()) as resp:
            assert resp.status == 200 and (await resp.read()).startswith(PNG)


async def test_stability_rejects_json_bad_fields_and_bad_key() -> None:
    async with StabilityEmulator() as emu, aiohttp.ClientSession() as s:
        url = f"{emu.url}/v2beta/stable-image/generate/ultra"
        async with s.post(url, json={"prompt": "a fox"}, headers=stability_headers()) as resp:
            error = await resp.json()
            assert resp.status == 400 and error["name"] == "bad_request" and error["errors"] and error["id"]
        async with s.post(url, data={"prompt": "a fox"}, headers=stability_headers()) as resp:
            assert resp.status == 400  # urlencoded is not multipart either
        for fields in ({"prompt": "a fox", "aspect_ratio": "7:3"}, {"aspect_ratio": "1:1"},
                       {"prompt": "a fox", "output_format": "gif"}):
            async with s.post(url, data=stability_form(fields), headers=stability_headers()) as resp:
                assert resp.status == 400 and (await resp.json())["name"] == "bad_request"
        async with s.post(url, data=stability_form({"prompt": "a fox"}), headers=stability_headers(key="nope")) as resp:
            assert resp.status == 401 and (await resp.json())["name"] == "unauthorized"
        emu.inject(Fault.AUTH)
        async with s.post(url, data=stability_form({"prompt": "a fox"}), headers=stability_headers()) as resp:
            assert resp.status == 401


async def test_stability_content_filtered_and_moderation_rejection() -> None:
    async with StabilityEmulator() as emu, aiohttp.ClientSession() as s:
        url = f"{emu.url}/v2beta/stable-image/generate/ultra"
        async with s.post(url, data=stability_form({"prompt": "a fox [[fault:content_policy]]"}),
                          headers=stability_headers()) as resp:
            assert resp.status == 200 and resp.headers["finish-reason"] == "CONTENT_FILTERED"
        emu.inject(Fault.CONTENT_POLICY)
        json_accept = stability_headers("application/json")
        async with s.post(url, data=stability_form({"prompt": "a fox"}), headers=json_accept) as resp:
            assert (await resp.json(content_type=None))["finish_reason"] == "CONTENT_FILTERED"
        emu.moderation = "reject"
        emu.inject(Fault.CONTENT_POLICY)
        async with s.post(url, data=stability_form({"prompt": "a fox"}), headers=stability_headers()) as resp:
            assert resp.status == 403 and (await resp.json())["name"] == "content_moderation"


async def test_stability_legacy_svd_202_then_video_and_malformed_poll() -> None:
    async with StabilityEmulator(polls_to_complete=2) as emu, aiohttp.ClientSession() as s:
        async with s.post(f"{emu.url}/v2beta/image-to-video", data=stability_form({}, {"image": png_bytes(100, 100)}),
                          headers=stability_headers("application/json")) as resp:
            assert resp.status == 400 and "dimensions" in (await resp.json())["errors"][0]
        async with s.post(f"{emu.url}/v2beta/image-to-video",
                          data=stability_form({"seed": "3", "motion_bucket_id": "127"},
                                              {"image": png_bytes(576, 1024)}),
                          headers=stability_headers("application/json")) as resp:
            generation_id = (await resp.json())["id"]
        assert len(generation_id) == 64
        result = f"{emu.url}/v2beta/image-to-video/result/{generation_id}"
        emu.inject(Fault.MALFORMED_JSON, step="status")
        async with s.get(result, headers=stability_headers("video/*")) as resp:
            with pytest.raises(json.JSONDecodeError):
                json.loads(await resp.read())
        async with s.get(result, headers=stability_headers("video/*")) as resp:
            assert resp.status == 202 and await resp.json() == {"id": generation_id, "status": "in-progress"}
        async with s.get(result, headers=stability_headers("video/*")) as resp:
            assert resp.status == 200 and resp.headers["finish-reason"] == "SUCCESS"
            assert is_mp4(await resp.read())
        async with s.get(result, headers=stability_headers("application/json")) as resp:
            assert is_mp4(base64.b64decode((await resp.json(content_type=None))["video"]))
        async with s.get(f"{emu.url}/v2beta/image-to-video/result/{'0' * 64}", headers=stability_headers()) as resp:
            assert resp.status == 404


# ---- Luma --------------------------------------------------------------------------------------------------
LUMA = {"Authorization": f"Bearer {KEY}"}


async def luma_create(s: aiohttp.ClientSession, emu: LumaEmulator, kind: str, body: dict[str, Any],
                      path: str | None = None) -> tuple[int, Any]:
    async with s.post(f"{emu.url}/dream-machine/v1/{path or f'generations/{kind}'}", json=body, headers=LUMA) as resp:
        return resp.status, await resp.json()


async def luma_get(s: aiohttp.ClientSession, emu: LumaEmulator, gen_id: str) -> tuple[int, Any]:
    async with s.get(f"{emu.url}/dream-machine/v1/generations/{gen_id}", headers=LUMA) as resp:
        return resp.status, await resp.json()


async def test_luma_video_dreams_to_completed_and_extends() -> None:
    async with LumaEmulator() as emu, aiohttp.ClientSession() as s:
        body = {"model": "ray-2", "prompt": "a tiger walking in snow [[polls:3]]", "aspect_ratio": "9:16",
                "resolution": "720p", "duration": "5s"}
        status, gen = await luma_create(s, emu, "video", body)
        assert status == 201 and gen["state"] == "queued" and gen["generation_type"] == "video"
        assert gen["request"]["prompt"] == body["prompt"] and gen["request"]["generation_type"] == "video"
        states = [(await luma_get(s, emu, gen["id"]))[1] for _ in range(3)]
        assert [g["state"] for g in states] == ["dreaming", "dreaming", "completed"]
        assert is_mp4(await fetch(s, states[-1]["assets"]["video"]))
        extend = {"model": "ray-2", "prompt": "keeps walking",
                  "keyframes": {"frame0": {"type": "generation", "id": gen["id"]}}}
        status, extended = await luma_create(s, emu, "video", extend, path="generations")  # the legacy path
        assert status == 201 and extended["request"]["keyframes"]["frame0"]["id"] == gen["id"]
        status, error = await luma_create(s, emu, "video", {**extend, "keyframes": {
            "frame0": {"type": "generation", "id": extended["id"]}}})
        assert status == 400 and "not completed" in error["detail"]
        status, error = await luma_create(s, emu, "video", {**extend, "keyframes": {
            "frame0": {"type": "generation", "id": "00000000-0000-0000-0000-000000000000"}}})
        assert status == 400 and "not found" in error["detail"]


async def test_luma_image_async_and_sync() -> None:
    async with LumaEmulator(polls_to_complete=1) as emu, aiohttp.ClientSession() as s:
        status, gen = await luma_create(s, emu, "image", {"model": "photon-1", "prompt": "a fox", "format": "png"})
        assert status == 201 and gen["state"] == "queued" and gen["assets"] is None
        _, done = await luma_get(s, emu, gen["id"])
        assert done["state"] == "completed" and (await fetch(s, done["assets"]["image"])).startswith(PNG)
        _, synced = await luma_create(s, emu, "image", {"model": "photon-flash-1", "prompt": "a fox", "sync": True})
        assert synced["state"] == "completed" and synced["assets"]["image"]


async def test_luma_failure_delete_list_and_errors() -> None:
    async with LumaEmulator(polls_to_complete=1) as emu, aiohttp.ClientSession() as s:
        _, gen = await luma_create(s, emu, "video", {"model": "ray-flash-2", "prompt": "x [[fault:content_policy]]"})
        _, failed = await luma_get(s, emu, gen["id"])
        assert failed["state"] == "failed" and failed["failure_reason"] and failed["assets"] is None
        emu.inject(Fault.EMPTY_RESULT)
        _, empty = await luma_create(s, emu, "video", {"model": "ray-2", "prompt": "a fox"})
        assert (await luma_get(s, emu, empty["id"]))[1]["assets"]["video"] is None
        async with s.get(f"{emu.url}/dream-machine/v1/generations?limit=1", headers=LUMA) as resp:
            listing = await resp.json()
        assert listing["count"] == 1 and listing["has_more"] and listing["generations"][0]["id"] == empty["id"]
        async with s.delete(f"{emu.url}/dream-machine/v1/generations/{gen['id']}", headers=LUMA) as resp:
            assert resp.status == 204
        assert (await luma_get(s, emu, gen["id"]))[0] == 404
        url = f"{emu.url}/dream-machine/v1/generations/{empty['id']}"
        async with s.get(url, headers={"Authorization": "Bearer x"}) as resp:
            assert resp.status == 401 and await resp.json() == {"detail": "Invalid API key is provided"}
        status, error = await luma_create(s, emu, "video", {"model": "ray-9", "prompt": "a fox", "duration": "5"})
        assert status == 422 and {tuple(e["loc"]) for e in error["detail"]} == {("body", "model"), ("body", "duration")}


async def test_luma_unavailable_bad_request_and_dropped_connection() -> None:
    async with LumaEmulator() as emu, aiohttp.ClientSession() as s:
        emu.inject(Fault.UNAVAILABLE)
        emu.inject(Fault.BAD_REQUEST)
        body = {"model": "ray-2", "prompt": "a fox"}
        assert (await luma_create(s, emu, "video", body))[0] == 503
        status, error = await luma_create(s, emu, "video", body)
        assert status == 400 and isinstance(error["detail"], str)
        _, gen = await luma_create(s, emu, "video", body)
        emu.inject(Fault.DROP, step="status")
        with pytest.raises(aiohttp.ClientError):
            await luma_get(s, emu, gen["id"])
        assert (await luma_get(s, emu, gen["id"]))[1]["state"] == "dreaming"


# ---- fixtures and the CLI table ------------------------------------------------------------------------------
async def test_fixtures_start_each_emulator(runway_emulator: RunwayEmulator, google_emulator: GoogleEmulator,
                                            stability_emulator: StabilityEmulator, luma_emulator: LumaEmulator) -> None:
    from tests.emulators import EMULATORS

    assert {"runway", "google", "stability", "luma"} <= set(EMULATORS.names())
    async with aiohttp.ClientSession() as s:
        for emu in (runway_emulator, google_emulator, stability_emulator, luma_emulator):
            assert emu.url.startswith("http://127.0.0.1:") and emu.api_key == KEY
            assert is_mp4(await fetch(s, emu.media_url("video")))  # media is public, like signed CDN URLs
