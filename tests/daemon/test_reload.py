"""routes.toml hot reload: valid edits live within a second, rename-saves, invalid edits keep serving."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from router.reload import RoutesHolder
from tests.daemon.conftest import MOCK_ROUTES, Daemon, StartDaemon

EXTRA_ROUTE = """
[routes."image-new"]
kind = "image"
[[routes."image-new".attempts]]
provider = "mock"
model = "mock-image-2"
"""


async def _wait_for(predicate, timeout: float = 1.0) -> float:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        if loop.time() - start > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
    return loop.time() - start


async def _watching(daemon: Daemon) -> tuple[asyncio.Task[None], asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.state.routes.watch(debounce_ms=20, stop=stop))
    await asyncio.sleep(0.1)  # let the watcher arm
    return task, stop


async def test_valid_edit_is_live_within_a_second(daemon: Daemon) -> None:
    task, stop = await _watching(daemon)
    try:
        daemon.routes_path.write_text(MOCK_ROUTES + EXTRA_ROUTE)
        elapsed = await _wait_for(lambda: "image-new" in daemon.state.routes.current.routes)
        assert elapsed < 1.0
        status, body, _ = await daemon.request("POST", "/v1/image/generations", json={"model": "image-new", "prompt": "x"})
        assert status == 200 and body["execution_metadata"]["attempts"][0]["model"] == "mock-image-2"
    finally:
        stop.set()
        await task


async def test_rename_save_is_picked_up(daemon: Daemon) -> None:
    task, stop = await _watching(daemon)
    try:
        tmp = daemon.routes_path.with_suffix(".toml.swp")
        tmp.write_text(MOCK_ROUTES + EXTRA_ROUTE)
        os.replace(tmp, daemon.routes_path)  # how vim/VS Code save
        await _wait_for(lambda: "image-new" in daemon.state.routes.current.routes)
    finally:
        stop.set()
        await task


async def test_invalid_edit_keeps_serving_and_is_reported(daemon: Daemon) -> None:
    task, stop = await _watching(daemon)
    before = daemon.state.routes.current
    try:
        daemon.routes_path.write_text(MOCK_ROUTES.replace('timeout = 10', 'timeout = -5'))
        await _wait_for(lambda: daemon.state.routes.last_error is not None)
        assert daemon.state.routes.current is before
        status, body, _ = await daemon.request("POST", "/v1/video/generations", json={"model": "video-fast", "prompt": "x"})
        assert status == 200
        _, routes, _ = await daemon.request("GET", "/v1/routes")
        assert routes["config_hash"] == before.config_hash
        assert any('routes."video-fast".attempts[0].timeout' in p for p in routes["last_reload_error"]["problems"])
        _, metrics, _ = await daemon.request("GET", "/metrics")
        assert 'tarash_router_config_reloads_total{result="failure"} 1.0' in metrics
        daemon.routes_path.write_text(MOCK_ROUTES)  # fixing the file clears the error
        await _wait_for(lambda: daemon.state.routes.last_error is None)
    finally:
        stop.set()
        await task


async def test_in_flight_request_keeps_its_snapshot(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon()
    slow = asyncio.create_task(daemon.request(
        "POST", "/v1/video/generations", json={"model": "video-fast", "prompt": "x"}))
    in_flight = daemon.state.metrics.jobs_in_flight.labels("video")
    await _wait_for(lambda: in_flight._value.get() > 0)  # the request has started on the old snapshot
    daemon.routes_path.write_text(EXTRA_ROUTE)  # video-fast disappears
    assert daemon.state.routes.reload()
    status, _, _ = await slow
    assert status == 200
    assert (await daemon.request("POST", "/v1/video/generations", json={"model": "video-fast", "prompt": "x"}))[0] == 404


def test_reload_diff_is_logged(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from router.log_setup import configure

    configure("info", "json")
    path = tmp_path / "routes.toml"
    path.write_text(MOCK_ROUTES)
    holder = RoutesHolder.load(path)
    path.write_text(MOCK_ROUTES.replace('model = "mock-image"', 'model = "mock-image-v2"') + EXTRA_ROUTE)
    assert holder.reload()
    line = [line for line in capsys.readouterr().err.splitlines() if "routes_reloaded" in line][0]
    assert '"added": ["image-new"]' in line and '"changed": ["image-fast"]' in line and '"removed": []' in line


async def test_a_burst_of_saves_is_debounced_into_one_reload(daemon: Daemon) -> None:
    swaps: list[str] = []
    daemon.state.routes.listeners.append(lambda ok, snapshot: swaps.append(snapshot.config_hash) if ok else None)
    task, stop = await _watching(daemon)
    try:
        for i in range(5):  # an editor writing, truncating, re-writing: no pause between the events
            daemon.routes_path.write_text(MOCK_ROUTES + EXTRA_ROUTE.replace("mock-image-2", f"mock-image-{i}"))
        await _wait_for(lambda: daemon.state.routes.current.routes.get("image-new") is not None
                        and daemon.state.routes.current.routes["image-new"].chain[0].model == "mock-image-4")
        assert 1 <= len(swaps) <= 2  # the final content, not five half-saved versions
    finally:
        stop.set()
        await task


async def test_other_files_written_beside_the_routes_file_reload_nothing(daemon: Daemon) -> None:
    # A DATA_DIR or a log file in the routes file's directory: their writes are changes the watcher sees, and
    # must not each re-read the routes file (an unchanged reload is still reported to every listener).
    reloads: list[bool] = []
    daemon.state.routes.listeners.append(lambda ok, snapshot: reloads.append(ok))
    task, stop = await _watching(daemon)
    try:
        for i in range(20):
            (daemon.routes_path.parent / "jobs.sqlite3-wal").write_bytes(b"x" * i)
            (daemon.routes_path.parent / f"daemon-{i % 3}.log").write_text(f"line {i}\n")
            await asyncio.sleep(0.005)
        daemon.routes_path.write_text(MOCK_ROUTES + EXTRA_ROUTE)  # then one save: the reload it makes is the only one
        await _wait_for(lambda: "image-new" in daemon.state.routes.current.routes)
        await asyncio.sleep(0.1)  # a reload the sibling writes had queued would land by now (debounce 20 ms)
        assert reloads == [True]
    finally:
        stop.set()
        await task
