"""What a reload reports (unchanged files, undo of a bad save, non-UTF-8 saves, empty saves) and what
validation catches (unknown defaults, empty [routes], poll_interval = 0, keys pasted into api_key_env), with
line numbers and without ever echoing a key."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

import aiohttp
import pytest

from router.routes import RoutesError, load, parse
from tests.daemon.conftest import MOCK_ROUTES, Daemon
from tests.daemon.test_reload import _wait_for, _watching
from tests.daemon.notified import SCRIPT, notified_daemon

#: Shaped like a Replicate token: a valid env var name by its characters, so only the key heuristic stops it.
PASTED_KEY = "r8_Zx81pQmW4vL0tYc7KsB2nHd9FjA5eR3uGoI6"
ONE_ROUTE = """
[routes."v"]
kind = "video"
[[routes."v".attempts]]
provider = "mock"
model = "mock-video"
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(RoutesError) as info:
        parse(text)
    return info.value.problems


# ---- validation -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "\n  \n", "[routes]\n", "# all commented out\n", '[providers."fal"]\n'])
def test_a_file_without_routes_is_invalid(text: str) -> None:
    problems = problems_of(text)
    assert len(problems) == 1
    assert "the file is empty" in problems[0] or problems[0].startswith("routes: no routes defined")


def test_unknown_defaults_and_zero_poll_interval_carry_their_path_and_line() -> None:
    text = """
[routes."v"]
kind = "video"
defaults = { durashun = 5, aspect_ratio = "9:16" }

[[routes."v".attempts]]
provider = "mock"
model = "mock-video"
poll_interval = 0
"""
    problems = problems_of(text)
    assert problems[0].startswith('routes."v".defaults.durashun: not a video request field; '
                                  "did you mean duration_seconds?")
    assert "extra_params" in problems[0] and problems[0].endswith("(line 4)")
    assert problems[1] == 'routes."v".attempts[0].poll_interval: Input should be greater than 0 (got 0) (line 9)'
    assert len(problems) == 2
    # The same key under extra_params is what a vendor-specific parameter looks like: accepted.
    parse(text.replace("durashun = 5", "extra_params = { camera_fixed = true }").replace("poll_interval = 0", ""))


def test_line_numbers_follow_arrays_of_tables_and_sub_tables() -> None:
    text = ONE_ROUTE + """[[routes."v".attempts]]
provider = "mock"
model = "m2"
timeout = -1
[routes."v".attempts.mock]
colour = "red"
"""
    problems = problems_of(text)
    assert 'routes."v".attempts[1].timeout: Input should be greater than 0 (got -1) (line 10)' in problems
    assert 'routes."v".attempts[1].mock.colour: Extra inputs are not permitted (got "red") (line 12)' in problems


def test_a_non_utf8_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "routes.toml"
    path.write_bytes(ONE_ROUTE.encode() + b'description = "caf\xe9"\n')
    with pytest.raises(RoutesError) as info:
        load(path)
    assert info.value.problems == [f"{path}: not UTF-8 text (byte 0xe9 on line 7); save the file as UTF-8"]


@pytest.mark.parametrize("pasted", [PASTED_KEY, "sk-proj-Hq3xV9mN2bL8kT5wR1yP", "0f3c9a7b2e6d4c1a8b5e9f0d3c7a2b6e"])
def test_a_key_pasted_into_api_key_env_is_named_but_never_echoed(tmp_path: Path, pasted: str) -> None:
    text = ONE_ROUTE + f'api_key_env = "{pasted}"\n'
    problems = problems_of(text)
    assert len(problems) == 1 and problems[0].startswith('routes."v".attempts[0].api_key_env: ')
    assert "(line 7)" in problems[0] and pasted not in problems[0]
    path = tmp_path / "routes.toml"
    path.write_text(text)
    for command in ("check", "routes"):
        result = subprocess.run([str(SCRIPT), command, str(path)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 1 and "api_key_env" in result.stderr
        assert pasted not in result.stdout + result.stderr


def test_a_real_env_var_name_is_not_mistaken_for_a_key() -> None:
    for name in ("FAL_KEY", "EMULATED_FAL_KEY_2", "OPENAI_API_KEY_PROD_2024", "my_fal_key"):
        assert parse(ONE_ROUTE + f'api_key_env = "{name}"\n').routes["v"].chain[0].provider_config == {
            "api_key_env": name}


# ---- reload reporting ---------------------------------------------------------------------------------------
def _metric(text: str, name: str) -> float:
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(name)))


async def _reload_metrics(daemon: Daemon) -> tuple[float, float, float, float]:
    _, text, _ = await daemon.request("GET", "/metrics")
    return (_metric(text, 'tarash_router_config_reloads_total{result="success"}'),
            _metric(text, 'tarash_router_config_reloads_total{result="failure"}'),
            _metric(text, "tarash_router_config_last_reload_successful"),
            _metric(text, "tarash_router_config_last_reload_success_timestamp_seconds"))


async def test_an_unchanged_reload_is_a_reported_success(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    from router.log_setup import configure

    configure("info", "json")
    before = await _reload_metrics(daemon)
    _, routes, _ = await daemon.request("GET", "/v1/routes")
    assert routes["last_reload"] is None
    await asyncio.sleep(0.01)  # the timestamp gauge must move
    assert daemon.state.routes.reload()  # what SIGHUP / systemctl reload does, with the file as it is
    success, failure, ok, stamp = await _reload_metrics(daemon)
    assert (success, failure, ok) == (before[0] + 1, before[1], 1) and stamp > before[3]
    _, routes, _ = await daemon.request("GET", "/v1/routes")
    assert routes["last_reload"]["result"] == "unchanged"
    assert routes["last_reload"]["config_hash"] == routes["config_hash"]
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    reloaded = [e for e in events if e["event"] == "routes_reloaded"]
    assert reloaded and reloaded[-1]["unchanged"] is True and reloaded[-1]["changed"] == []


async def test_undoing_a_rejected_save_byte_for_byte_clears_the_failure_everywhere(daemon: Daemon) -> None:
    good = daemon.routes_path.read_bytes()
    daemon.routes_path.write_text(MOCK_ROUTES.replace("timeout = 10", "timeout = -5"))
    assert not daemon.state.routes.reload()
    success, failure, ok, _ = await _reload_metrics(daemon)
    assert ok == 0
    daemon.routes_path.write_bytes(good)  # git checkout routes.toml
    assert daemon.state.routes.reload()
    after = await _reload_metrics(daemon)
    assert after[:3] == (success + 1, failure, 1)  # TarashConfigReloadFailing stops firing
    _, routes, _ = await daemon.request("GET", "/v1/routes")
    assert routes["last_reload_error"] is None and routes["last_reload"]["result"] == "unchanged"


@pytest.mark.parametrize("content", [b"", b'[routes."video-fast"]\nkind = "video"\n\xff\xfe\n'],
                         ids=["truncated", "not-utf8"])
async def test_a_bad_save_is_reported_and_the_watcher_keeps_running(daemon: Daemon, content: bytes) -> None:
    task, stop = await _watching(daemon)
    before = daemon.state.routes.current
    try:
        daemon.routes_path.write_bytes(content)
        await _wait_for(lambda: daemon.state.routes.last_error is not None)
        assert daemon.state.routes.current is before  # every route still served
        _, routes, _ = await daemon.request("GET", "/v1/routes")
        assert routes["last_reload"]["result"] == "failed" and len(routes["routes"]) == len(before.routes)
        problem = routes["last_reload_error"]["problems"][0]
        assert "not UTF-8" in problem if content else "the file is empty" in problem
        _, _, ok, _ = await _reload_metrics(daemon)
        assert ok == 0
        assert not task.done()  # the watcher survived
        daemon.routes_path.write_text(MOCK_ROUTES + ONE_ROUTE)  # and applies the next valid save
        await _wait_for(lambda: "v" in daemon.state.routes.current.routes)
        assert daemon.state.routes.last_error is None
    finally:
        stop.set()
        await task


async def test_a_pasted_key_never_reaches_the_reload_log_or_v1_routes(
    daemon: Daemon, capsys: pytest.CaptureFixture[str],
) -> None:
    from router.log_setup import configure

    configure("info", "json")
    daemon.routes_path.write_text(MOCK_ROUTES + ONE_ROUTE + f'api_key_env = "{PASTED_KEY}"\n')
    assert not daemon.state.routes.reload()
    _, routes, _ = await daemon.request("GET", "/v1/routes")
    assert any("api_key_env" in p for p in routes["last_reload_error"]["problems"])
    assert PASTED_KEY not in json.dumps(routes)
    err = capsys.readouterr().err
    assert "routes_reload_failed" in err and PASTED_KEY not in err


async def test_sighup_with_a_non_utf8_file_records_the_error_and_systemd_gets_ready(tmp_path: Path) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text(ONE_ROUTE)
    async with notified_daemon(tmp_path, routes) as daemon:
        assert (await daemon.message()).startswith("READY=1")
        routes.write_bytes(ONE_ROUTE.encode() + b'description = "\xe9"\n')
        daemon.proc.send_signal(signal.SIGHUP)
        # The file watch may reload too; whichever comes first, SIGHUP's pair must arrive.
        assert (await daemon.message()).startswith("RELOADING=1")
        assert (await daemon.message()).startswith("READY=1")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(daemon.base + "/v1/routes") as response:
                body = await response.json()
            assert "not UTF-8" in body["last_reload_error"]["problems"][0]
            routes.write_text(ONE_ROUTE.replace('"v"', '"v2"'))  # the watcher is still alive
            for _ in range(300):
                async with session.get(daemon.base + "/v1/models") as response:
                    if [m["id"] for m in (await response.json())["data"]] == ["v2"]:
                        break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("a valid save after the bad one was never applied")
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.exit_code() == 0
        err = daemon.stderr()
    assert "Traceback" not in err


async def test_the_watcher_survives_its_directory_being_removed_and_recreated(tmp_path: Path) -> None:
    import shutil

    from router.reload import RoutesHolder

    conf = tmp_path / "conf"
    conf.mkdir()
    path = conf / "routes.toml"
    path.write_text(ONE_ROUTE)
    holder = RoutesHolder.load(path)
    stop = asyncio.Event()
    task = asyncio.create_task(holder.watch(debounce_ms=20, stop=stop, retry_seconds=0.02))
    try:
        await asyncio.sleep(0.1)  # armed
        shutil.rmtree(conf)  # a deploy tool replacing the config directory
        await _wait_for(lambda: holder.last_error is not None)
        assert holder.current.routes.keys() == {"v"}  # still serving
        conf.mkdir()
        path.write_text(ONE_ROUTE.replace('"v"', '"w"'))
        await _wait_for(lambda: "w" in holder.current.routes, timeout=3)
        assert not task.done() and holder.last_error is None
    finally:
        stop.set()
        await task
