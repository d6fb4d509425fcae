"""The README's Quickstart fallback command, run on a real answer of the repo's routes.toml, shows the fallback."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.daemon.conftest import StartDaemon

ROOT = Path(__file__).parents[2]


async def test_the_quickstart_fallback_command_shows_each_attempt(start_daemon: StartDaemon) -> None:
    line = next(line for line in (ROOT / "README.md").read_text().splitlines()
                if line.startswith("curl") and "video-flaky" in line)
    request, command = line.split(" | ", 1)
    body = re.search(r"-d '([^']*)'", request)[1]  # type: ignore[index]
    daemon = await start_daemon((ROOT / "routes.toml").read_text())
    for _ in range(40):  # the first vendor fails half the time; until one answer shows the fallback
        async with daemon.session.post(daemon.url + "/v1/video/generations", data=body) as response:
            answer = await response.read()
        shown = subprocess.run(command, shell=True, input=answer, capture_output=True, timeout=30)
        assert shown.returncode == 0, shown.stderr
        lines = [line.rstrip() for line in shown.stdout.decode().splitlines()]
        if len(lines) == 2:
            assert lines == ["1 mock mock-flaky failed RateLimitError", "2 mock mock-video success"]
            return
        assert lines == ["1 mock mock-flaky success"]
    raise AssertionError("no fallback in 40 tries of a route that fails half the time")
