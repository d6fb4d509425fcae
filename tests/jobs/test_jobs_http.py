"""Jobs through both APIs (native /v1/jobs and OpenAI /v1/videos) against the running daemon."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from tests.daemon.conftest import MOCK_ROUTES, Daemon, StartDaemon

SLOW_ROUTE = """
[routes."video-poll"]
kind = "video"
[[routes."video-poll".attempts]]
provider = "mock"
model = "mock-poll"
max_poll_attempts = 100000
mock = { polling = { status_sequence = ["queued", "processing", "completed"], progress_percentages = [0, 50, 100], delay_between_updates = 0.02 } }
"""


async def wait_status(daemon: Daemon, job_id: str, *statuses: str) -> dict:  # type: ignore[type-arg]
    for _ in range(500):
        _, body, _ = await daemon.request("GET", f"/v1/jobs/{job_id}")
        if body["status"] in statuses:
            return body  # type: ignore[no-any-return]
        await asyncio.sleep(0.01)
    raise AssertionError(f"job stayed {body['status']}")


async def test_create_poll_and_result(daemon: Daemon) -> None:
    status, body, headers = await daemon.request("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "x"})
    assert status == 202 and body["status"] == "queued" and headers["Location"] == f"/v1/jobs/{body['id']}"
    assert body["kind"] == "video" and body["model"] == "video-fast"
    job = await wait_status(daemon, body["id"], "completed")
    assert job["progress_percent"] == 100 and job["result"]["is_mock"] and job["execution_metadata"]["successful_attempt"] == 1


async def test_failed_job_keeps_error_and_metadata(daemon: Daemon) -> None:
    _, body, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-down", "prompt": "x"})
    job = await wait_status(daemon, body["id"], "failed")
    assert job["error"]["type"] == "all_attempts_failed_error" and job["error"]["status"] == 429
    assert len(job["execution_metadata"]["attempts"]) == 2


async def test_events_replay_history_for_late_subscribers(daemon: Daemon) -> None:
    _, body, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "x"})
    await wait_status(daemon, body["id"], "completed")
    async with daemon.session.get(f"{daemon.url}/v1/jobs/{body['id']}/events") as response:
        text = await response.text()
    names = [block.split("\n")[0][7:] for block in text.strip().split("\n\n")]
    assert names == ["update", "update", "result"]


async def test_events_stream_live(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(MOCK_ROUTES + SLOW_ROUTE)
    _, body, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-poll", "prompt": "x"})
    async with daemon.session.get(f"{daemon.url}/v1/jobs/{body['id']}/events") as response:
        text = await response.text()
    blocks = text.strip().split("\n\n")
    assert blocks[-1].startswith("event: result") and len(blocks) == 3
    assert [json.loads(b.split("\n")[1][6:])["progress_percent"] for b in blocks[:2]] == [0, 50]


async def test_cancel_reaches_upstream(start_daemon: StartDaemon) -> None:
    from router.registry import get_handler

    daemon = await start_daemon(MOCK_ROUTES + SLOW_ROUTE.replace("0.02", "3600"))
    mock = get_handler("mock")
    before = len(mock.cancelled)
    _, body, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-poll", "prompt": "x"})
    await wait_status(daemon, body["id"], "running")
    await asyncio.sleep(0.05)  # the mock job is submitted and polling
    status, cancelled, _ = await daemon.request("DELETE", f"/v1/jobs/{body['id']}")
    assert status == 200 and cancelled["status"] == "cancelled"
    assert len(mock.cancelled) == before + 1
    async with daemon.session.get(f"{daemon.url}/v1/jobs/{body['id']}/events") as response:
        assert '"type":"generation_cancelled_error"' in await response.text()


async def test_idempotency_key_returns_the_same_job(daemon: Daemon) -> None:
    headers = {"Idempotency-Key": "order-42"}
    _, first, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "x"}, headers=headers)
    _, second, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "x"}, headers=headers)
    assert first["id"] == second["id"]
    _, other, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "x"})
    assert other["id"] != first["id"]


async def test_bad_job_requests(daemon: Daemon) -> None:
    assert (await daemon.request("POST", "/v1/jobs", json={"model": "nope", "prompt": "x"}))[0] == 404
    assert (await daemon.request("POST", "/v1/jobs", json={"prompt": "x"}))[0] == 400
    assert (await daemon.request("GET", "/v1/jobs/job_missing"))[0] == 404


async def test_jobs_are_visible_only_to_their_creator(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(api_keys="alice-token-1,bob-token-22,root-token-333:admin")
    alice, bob, root = ({"Authorization": f"Bearer {t}"} for t in ("alice-token-1", "bob-token-22", "root-token-333"))
    _, job, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "x"}, headers=alice)
    assert (await daemon.request("GET", f"/v1/jobs/{job['id']}", headers=alice))[0] == 200
    assert (await daemon.request("GET", f"/v1/jobs/{job['id']}", headers=bob))[0] == 404
    assert (await daemon.request("DELETE", f"/v1/jobs/{job['id']}", headers=bob))[0] == 404
    assert (await daemon.request("GET", f"/v1/jobs/{job['id']}", headers=root))[0] == 200
    _, listed, _ = await daemon.request("GET", "/v1/jobs", headers=bob)
    assert listed["data"] == []


async def test_openai_sdk_videos_flow(daemon: Daemon) -> None:
    client = openai.AsyncOpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)
    video = await client.videos.create(model="video-fast", prompt="a fox", seconds="8", size="720x1280")
    assert video.status == "queued" and video.progress == 0 and video.size == "720x1280" and video.seconds == "8"
    for _ in range(300):
        video = await client.videos.retrieve(video.id)
        if video.status == "completed":
            break
        await asyncio.sleep(0.01)
    assert video.status == "completed" and video.progress == 100
    content = await client.videos.download_content(video.id)
    assert (await content.aread())[4:8] == b"ftyp"
    _, job, _ = await daemon.request("GET", f"/v1/jobs/{video.id}")
    assert job["result"]["aspect_ratio"] == "9:16" and job["result"]["raw_response"]["file"] == "mock-9x16.mp4"
    page = await client.videos.list()
    assert video.id in [v.id for v in page.data]
    deleted = await client.videos.delete(video.id)
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        await client.videos.retrieve(video.id)
    await client.close()


async def test_openai_video_failure_and_input_reference(daemon: Daemon) -> None:
    client = openai.AsyncOpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0)
    failing = await client.videos.create(model="video-down", prompt="x")
    for _ in range(300):
        failing = await client.videos.retrieve(failing.id)
        if failing.status == "failed":
            break
        await asyncio.sleep(0.01)
    assert failing.status == "failed" and failing.error and "slow down" in failing.error.message
    from providers._mock_media import png_bytes

    with_image = await client.videos.create(model="video-fast", prompt="x",
                                            input_reference=("frame.png", png_bytes(8, 8), "image/png"))
    _, job, _ = await daemon.request("GET", f"/v1/jobs/{with_image.id}")
    assert job["model"] == "video-fast"
    await client.close()


async def test_list_pagination(daemon: Daemon) -> None:
    ids = [(await daemon.request("POST", "/v1/jobs", json={"model": "image-fast", "prompt": str(i)}))[1]["id"] for i in range(4)]
    _, page, _ = await daemon.request("GET", "/v1/jobs?limit=2")
    assert [j["id"] for j in page["data"]] == ids[::-1][:2] and page["has_more"]
    _, rest, _ = await daemon.request("GET", f"/v1/jobs?limit=2&after={page['data'][-1]['id']}")
    assert [j["id"] for j in rest["data"]] == ids[1::-1] and not rest["has_more"]  # exactly the last page


async def test_idempotency_key_reused_for_another_request_is_refused(daemon: Daemon) -> None:
    headers = {"Idempotency-Key": "order-43"}
    _, first, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "x"}, headers=headers)
    status, body, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-fast", "prompt": "y"}, headers=headers)
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused" and first["id"] in body["error"]["message"]
    status, body, _ = await daemon.request("POST", "/v1/videos", json={"model": "video-fast", "prompt": "x"}, headers=headers)
    assert status == 422  # the same key on the other create endpoint is another request too


async def test_racing_retries_with_one_idempotency_key_make_one_job(daemon: Daemon) -> None:
    headers = {"Idempotency-Key": "order-44"}
    answers = await asyncio.gather(*(daemon.request("POST", "/v1/videos", json={"model": "video-fast", "prompt": "x"},
                                                    headers=headers) for _ in range(6)))
    assert {status for status, _, _ in answers} == {200} and len({body["id"] for _, body, _ in answers}) == 1
    _, listed, _ = await daemon.request("GET", "/v1/videos")
    assert len(listed["data"]) == 1


async def test_keepalives_fill_quiet_stretches_without_closing_the_stream() -> None:
    from router.http.jobs_api import with_keepalives

    release = asyncio.Event()
    closed = []

    async def events():  # type: ignore[no-untyped-def]
        try:
            yield "first"
            await release.wait()
            yield "last"
        finally:
            closed.append(True)

    seen = []
    async for item in with_keepalives(events(), 0.005):
        seen.append(item)
        if seen.count(None) == 3:
            release.set()
    assert seen[0] == "first" and seen[-1] == "last" and seen.count(None) >= 3 and closed == [True]


async def test_local_media_copy_survives_an_expired_vendor_url(start_daemon: StartDaemon,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.emulators.fal import FalEmulator

    async with FalEmulator() as fal:
        routes = f"""
[routes."fal-video"]
kind = "video"
[[routes."fal-video".attempts]]
provider = "fal"
model = "fal-ai/veo3"
base_url = "{fal.url}"
api_key_env = "EMULATED_FAL_KEY_2"
poll_interval = 0.01
"""
        monkeypatch.setenv("EMULATED_FAL_KEY_2", "test-key")
        daemon = await start_daemon(routes, keep_media_copy=True)
        _, body, _ = await daemon.request("POST", "/v1/jobs", json={"model": "fal-video", "prompt": "x"})
        job = await wait_status(daemon, body["id"], "completed")
        assert job["result"]["video"].startswith(fal.url)
        for _ in range(200):  # the copy is made after the job completed (the result is never held back by it)
            _, job, _ = await daemon.request("GET", f"/v1/jobs/{body['id']}")
            if "local_copy" in job["result"]["provider_metadata"]:
                break
            await asyncio.sleep(0.01)
        assert job["result"]["provider_metadata"]["local_copy"] is True  # said, but the server path is not shown
        assert str(daemon.state.settings.data_dir) not in json.dumps(job)
    # The vendor is gone (its URL no longer answers); /content still serves the copy.
    async with daemon.session.get(f"{daemon.url}/v1/videos/{body['id']}/content") as response:
        assert response.status == 200 and (await response.read())[4:8] == b"ftyp"


async def test_a_disconnected_event_subscriber_is_released(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(MOCK_ROUTES + SLOW_ROUTE.replace("0.02", "3600"))
    _, body, _ = await daemon.request("POST", "/v1/jobs", json={"model": "video-poll", "prompt": "x"})
    jobs = daemon.state.jobs
    async with daemon.session.get(f"{daemon.url}/v1/jobs/{body['id']}/events") as response:
        assert (await response.content.readuntil(b"\n\n")).startswith(b"event: update")
        assert body["id"] in jobs._subscribers  # noqa: SLF001
        response.close()  # the client goes away mid-stream
    for _ in range(200):
        if body["id"] not in jobs._subscribers:  # noqa: SLF001
            break
        await asyncio.sleep(0.005)
    assert body["id"] not in jobs._subscribers  # noqa: SLF001
    assert (await daemon.request("GET", f"/v1/jobs/{body['id']}"))[1]["status"] == "running"  # the job goes on
