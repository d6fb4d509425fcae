"""The console script as a new user runs it: --version, one-line start-up failures, JSON-only log streams,
``routes --json``, ``generate`` flags and a missing routes file."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import router
from router.settings import Settings

SCRIPT = Path(sys.executable).parent / "tarash-router"
ROUTES = """
[routes."video-quick"]
kind = "video"
description = "one mock"
[[routes."video-quick".attempts]]
provider = "mock"
model = "mock-video"
timeout = 30
mock = { polling = { status_sequence = ["queued", "completed"], delay_between_updates = 0.01 } }

[routes."image-quick"]
kind = "image"
[[routes."image-quick".attempts]]
provider = "mock"
model = "mock-image"
"""


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TARASH_ROUTER_")}
    environment.pop("NOTIFY_SOCKET", None)
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**environment, "TARASH_ROUTER_DATA_DIR": str(cwd / "data"), **(env or {})})


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "routes.toml").write_text(ROUTES)
    return tmp_path


def test_version(workdir: Path) -> None:
    result = run("--version", cwd=workdir)
    assert result.returncode == 0 and result.stdout.strip() == f"tarash-router {router.__version__}"


def test_a_port_in_use_is_one_line_naming_the_address(workdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--port", str(port), cwd=workdir, env={"TARASH_ROUTER_LOG_FORMAT": "json"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    failure = json.loads(lines[-1])
    assert failure["event"] == "cannot_listen" and failure["address"] == f"127.0.0.1:{port}"
    assert "in use" in failure["reason"] and "--port" in failure["hint"]
    assert all(json.loads(line) for line in lines)  # nothing but JSON events


@pytest.mark.parametrize(("env", "words"), [
    ({"TARASH_ROUTER_PORT": "eighty"}, "invalid setting TARASH_ROUTER_PORT: Input should be a valid integer"),
    ({"TARASH_ROUTER_LOG_LEVEL": "loud"}, "invalid setting TARASH_ROUTER_LOG_LEVEL: Input should be"),
])
def test_a_bad_setting_is_one_line(workdir: Path, env: dict[str, str], words: str) -> None:
    result = run("serve", cwd=workdir, env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and words in result.stderr


def test_settings_spelled_in_capitals_are_the_same_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARASH_ROUTER_LOG_LEVEL", "WARNING")  # Python's logging and most units spell it so
    monkeypatch.setenv("TARASH_ROUTER_LOG_FORMAT", "JSON")
    monkeypatch.setenv("TARASH_ROUTER_EVENT_LOOP", " AsyncIO ")
    settings = Settings(_env_file=None)
    assert (settings.log_level, settings.log_format, settings.event_loop) == ("warning", "json", "asyncio")


def test_a_missing_routes_file_points_at_the_routes_flag(tmp_path: Path) -> None:
    for args in (["serve"], ["check"], ["generate", "video", "--model", "x", "--prompt", "fox"]):
        result = run(*args, cwd=tmp_path)  # outside the repository: no routes.toml here
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "routes.toml: cannot read" in result.stderr and "--routes" in result.stderr


def test_json_log_mode_prints_only_json_lines(workdir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARASH_ROUTER_")}
    env.pop("NOTIFY_SOCKET", None)
    env |= {"TARASH_ROUTER_LOG_FORMAT": "json", "TARASH_ROUTER_DATA_DIR": str(workdir / "data")}
    proc = subprocess.Popen([str(SCRIPT), "serve", "--port", str(port)], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        events = [json.loads(proc.stderr.readline())]  # a plain-text line here fails the test
        while events[-1]["event"] != "listening":
            events.append(json.loads(proc.stderr.readline()))
        assert events[-1]["url"] == f"http://127.0.0.1:{port}"
        proc.terminate()
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert [json.loads(line)["event"] for line in rest.splitlines()][-1] == "stopped"  # every line is JSON


def test_routes_json_lists_each_route_with_its_attempts(workdir: Path) -> None:
    result = run("routes", "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert [r["name"] for r in body["routes"]] == ["video-quick", "image-quick"]
    video = body["routes"][0]
    assert (video["kind"], video["description"]) == ("video", "one mock")
    assert [(a["provider"], a["model"], a["timeout"]) for a in video["attempts"]] == [("mock", "mock-video", 30)]
    assert len(body["config_hash"]) == 16


def _mp4_size(data: bytes) -> tuple[int, int]:
    """Width and height from the first track header (tkhd) box: 16.16 fixed point at its end."""
    at = data.index(b"tkhd")
    box_end = at - 4 + struct.unpack(">I", data[at - 4:at])[0]
    width, height = struct.unpack(">II", data[box_end - 8:box_end])
    return width >> 16, height >> 16


def test_generate_takes_duration_size_and_aspect_ratio_flags(workdir: Path) -> None:
    out = workdir / "tall.mp4"
    result = run("generate", "video", "--model", "video-quick", "--prompt", "fox", "--aspect-ratio", "9:16",
                 "--duration", "4", "--resolution", "720p", "--out", str(out), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert _mp4_size(out.read_bytes()) == (144, 256)  # the mock's 9:16 sample: the flag reached the request
    wide = workdir / "wide.mp4"
    result = run("generate", "video", "--model", "video-quick", "--prompt", "fox", "--size", "1280x720",
                 "--out", str(wide), cwd=workdir)
    assert result.returncode == 0 and _mp4_size(wide.read_bytes()) == (256, 144)
    png = workdir / "small.png"
    result = run("generate", "image", "--model", "image-quick", "--prompt", "fox", "--size", "40x24",
                 "--out", str(png), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert struct.unpack(">II", png.read_bytes()[16:24]) == (40, 24)


def test_generate_names_the_file_after_the_media_it_got(workdir: Path) -> None:
    (workdir / "jpeg.toml").write_text('''
[routes."image-jpeg"]
kind = "image"
[[routes."image-jpeg".attempts]]
provider = "mock"
model = "mock-image"
[[routes."image-jpeg".attempts.mock.responses]]
mock_response = { request_id = "r", images = ["/9j/4AAQSkZJRg=="], content_type = "image/jpeg" }
''')
    result = run("generate", "image", "--model", "image-jpeg", "--prompt", "fox", "--routes", "jpeg.toml", cwd=workdir)
    assert result.returncode == 0, result.stderr
    [saved] = workdir.glob("*.jpg")
    assert saved.read_bytes().startswith(b"\xff\xd8") and not list(workdir.glob("*.png"))


@pytest.mark.parametrize(("args", "words"), [
    (["video", "--aspect-ratio", "7:3"], "aspect_ratio: Input should be"),
    (["video", "--size", "wide"], "size must look like 1280x720"),
    (["image", "--duration", "4"], "--duration only apply to video"),
])
def test_generate_refuses_bad_flags_in_one_line(workdir: Path, args: list[str], words: str) -> None:
    kind, *flags = args
    model = "video-quick" if kind == "video" else "image-quick"
    result = run("generate", kind, "--model", model, "--prompt", "fox", *flags, cwd=workdir)
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr


def test_an_unusable_data_dir_is_one_line(workdir: Path) -> None:
    (workdir / "occupied").write_text("a file where the data directory should be")
    result = run("serve", "--port", "0", cwd=workdir,
                 env={"TARASH_ROUTER_LOG_FORMAT": "json", "TARASH_ROUTER_DATA_DIR": str(workdir / "occupied" / "d")})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    failure = json.loads(result.stderr.strip().splitlines()[-1])
    assert failure["event"] == "cannot_start" and "occupied" in failure["path"] and "DATA_DIR" in failure["hint"]


def test_a_routes_path_that_is_a_directory_is_one_line(workdir: Path) -> None:
    (workdir / "routes.d").mkdir()
    result = run("check", "routes.d", cwd=workdir)
    assert result.returncode == 1 and result.stderr == "routes.d: cannot read: Is a directory\n"


def test_a_bad_secret_setting_is_named_without_its_value(workdir: Path) -> None:
    result = run("check", cwd=workdir, env={"TARASH_ROUTER_API_KEYS": "sekrit-token-4821:admin,:admin"})
    assert result.returncode == 2 and "invalid setting TARASH_ROUTER_API_KEYS" in result.stderr
    assert "sekrit-token-4821" not in result.stderr
