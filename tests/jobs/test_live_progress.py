"""Polling clients see a running job's progress (GET /v1/jobs/{id}, GET /v1/videos/{id}) without a store write
per poll, and the README's openai SDK snippet polls with a pause and prints moving progress."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.conftest import Daemon, StartDaemon

STEPPED = """
[routes."video-fast"]
kind = "video"
[[routes."video-fast".attempts]]
provider = "mock"
model = "mock-stepped"
max_poll_attempts = 1000
mock = { polling = { status_sequence = ["queued", "processing", "processing", "processing", "completed"], progress_percentages = [0, 25, 50, 75, 100], delay_between_updates = 0.1 } }

[routes."image-fast"]
kind = "image"
[[routes."image-fast".attempts]]
provider = "mock"
model = "mock-image"
"""
README = Path(__file__).parents[2] / "README.md"


async def _poll_until_done(daemon: Daemon, path: str, field: str) -> list[tuple[Any, str, int]]:
    """(progress, status, store rows written) for each GET until the job ends."""
    seen = []
    for _ in range(1000):
        _, body, _ = await daemon.request("GET", path)
        seen.append((body[field], body["status"], daemon.state.jobs.store.rows_written))
        if body["status"] in ("completed", "failed"):
            return seen
        await asyncio.sleep(0.01)
    raise AssertionError("the job never finished")


@pytest.mark.parametrize(("create", "path", "field"), [
    ("/v1/jobs", "/v1/jobs/{id}", "progress_percent"),
    ("/v1/videos", "/v1/videos/{id}", "progress"),
])
async def test_polled_progress_moves_without_a_write_per_poll(
    start_daemon: StartDaemon, create: str, path: str, field: str,
) -> None:
    daemon = await start_daemon(STEPPED)
    _, body, _ = await daemon.request("POST", create, json={"model": "video-fast", "prompt": "fox"})
    seen = await _poll_until_done(daemon, path.format(id=body["id"]), field)
    progress = [p or 0 for p, status, _ in seen if status in ("running", "in_progress")]
    assert {25, 50, 75} & set(progress), seen  # intermediate values, not null/0 until the end
    assert progress == sorted(progress)  # never backwards
    assert seen[-1][0] == 100
    # Reading progress writes nothing: the store's writes follow the job's steps, not the number of polls.
    writes = seen[-1][2] - seen[0][2]
    states = {(p, status) for p, status, _ in seen}
    assert writes <= 2 * len(states) + 4, seen


def _readme_sdk_snippet() -> str:
    text = README.read_text()
    start = text.index("With the official `openai` SDK")
    return re.search(r"```python\n(.*?)```", text[start:], re.S)[1]  # type: ignore[index]


async def test_the_readme_sdk_snippet_pauses_between_polls_and_shows_progress(
    start_daemon: StartDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    daemon = await start_daemon(STEPPED)
    code = _readme_sdk_snippet().replace("http://127.0.0.1:8787", daemon.url)
    assert "time.sleep(" in code
    sleeps: list[float] = []
    real_sleep = time.sleep

    def short_sleep(seconds: float) -> None:  # the README's pause, shortened: tests never sleep for seconds
        sleeps.append(seconds)
        real_sleep(0.02)

    monkeypatch.setattr(time, "sleep", short_sleep)
    monkeypatch.chdir(tmp_path)
    await asyncio.to_thread(exec, compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert (tmp_path / "fox.mp4").read_bytes()[4:8] == b"ftyp"
    assert sleeps and all(s >= 0.5 for s in sleeps)  # a real pause between polls, not a tight loop
    _, metrics, _ = await daemon.request("GET", "/metrics")
    retrieves = sum(float(line.split()[-1]) for line in metrics.splitlines()
                    if line.startswith("tarash_router_http_requests_total") and 'method="GET"' in line
                    and 'path="/v1/videos/{id}"' in line)
    assert retrieves <= len(sleeps) + 1
    assert re.search(r"\b(25|50|75)\b", printed), printed  # progress moved while it ran


async def test_the_sdk_poll_helper_follows_the_routes_poll_interval(start_daemon: StartDaemon) -> None:
    import openai

    daemon = await start_daemon(STEPPED)  # the mock polls every 0.1 s
    client = openai.OpenAI(base_url=daemon.url + "/v1", api_key="unused")
    waits: list[float] = []
    sdk_sleep = client.videos._sleep  # noqa: SLF001 - recorded, not replaced: the waits still happen

    def recorded(seconds: float) -> None:
        waits.append(seconds)
        sdk_sleep(seconds)

    client.videos._sleep = recorded  # type: ignore[method-assign]  # noqa: SLF001
    video = await asyncio.to_thread(client.videos.create_and_poll, model="video-fast", prompt="fox")
    assert video.status == "completed" and video.progress == 100
    assert waits and set(waits) == {0.1}  # the route's poll delay, not the SDK's 1 s default
    _, body, headers = await daemon.request("GET", f"/v1/videos/{video.id}")
    assert "openai-poll-after-ms" not in headers  # finished: nothing to poll for
    _, queued, _ = await daemon.request("POST", "/v1/videos", json={"model": "video-fast", "prompt": "fox"})
    _, _, headers = await daemon.request("GET", f"/v1/videos/{queued['id']}")
    assert headers["openai-poll-after-ms"] == "100"
