"""Random, type-confused requests to every endpoint of a daemon serving the shipped ``routes.toml``: each answer is
below 500 and, when it is an error, in the documented error shape. Seeded, so a failure names a request that
fails again; ``test_hardening.py`` holds the named attacks, this the breadth."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.conftest import Daemon, StartDaemon

ROUTES = Path(__file__).parents[2] / "routes.toml"
FIELDS = ("model", "prompt", "n", "size", "duration_seconds", "resolution", "aspect_ratio", "image_list",
          "extra_params", "webhook_url", "response_format", "seed", "negative_prompt", "video", "quality", "style",
          "user", "generate_audio", "image", "images", "mask", "output_format", "stream", "seconds", "metadata")
ROUTE_NAMES = ("image-fast", "video-fast", "video-flaky")
MODELS = (*ROUTE_NAMES, "nope", "", "video-fast/../x")
SCALARS: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2**63, -(2**70), 1e308, -0.0, 3.5, "", "x", "a" * 5000, "\u0000", "\ud7ff\uffff",
    "💥" * 10, "1024x1024", "16:9", "720p", "9999999x9999999", "0x0", "http://127.0.0.1/x",
    "data:image/png;base64,AAAA", "data:,", "file:///etc/passwd", "NaN", "-1", "1e400", "{}", "[]")
RAW_BODIES = (b"", b"{", b"null", b"[]", b"\xff\xfe", b'{"model": "image-fast"', b"1" * 100, b'"str"',
              b'{"model":"image-fast","prompt":"x"}' * 2, b"[" * 5000 + b"]" * 5000)
GENERATIONS = ("/v1/images/generations", "/v1/image/generations", "/v1/video/generations", "/v1/jobs", "/v1/videos")
WEBHOOKS = ("/v1/webhooks/fal/tok", "/v1/webhooks/replicate/x", "/v1/webhooks/nope/x", "/v1/webhooks/luma/%00")
GETS = ("/v1/jobs", "/v1/videos", "/v1/status", "/v1/usage", "/v1/models", "/v1/routes", "/healthz")
IDS = ("job_" + "0" * 32, "x", "%2e%2e", "job_" + "z" * 300, "%00")
QUERY_KEYS = ("limit", "after", "before", "status", "route", "model", "order", "cursor", "offset", "kind")
CONTENT_TYPES = ("application/json", "text/plain", "multipart/form-data", "application/json; charset=latin-1", "")


class Requests:
    """A seeded stream of requests: (method, path, body, query, headers)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def value(self, depth: int = 0) -> Any:
        roll = self.rng.random()
        if depth > 3 or roll < 0.6:
            return self.rng.choice(SCALARS)
        if roll < 0.8:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        return {self.rng.choice((*FIELDS, "type", "url")): self.value(depth + 1) for _ in range(self.rng.randint(0, 4))}

    def body(self) -> bytes:
        if self.rng.random() < 0.05:
            return self.rng.choice(RAW_BODIES)
        fields: dict[str, Any] = {}
        if self.rng.random() < 0.9:
            # Mostly a real route, so most requests reach the field checks rather than "no such model".
            roll = self.rng.random()
            fields["model"] = (self.rng.choice(ROUTE_NAMES) if roll < 0.7 else self.rng.choice(MODELS) if roll < 0.9
                               else self.value())
        if self.rng.random() < 0.8:
            fields["prompt"] = self.rng.choice(("a fox", "")) if self.rng.random() < 0.7 else self.value()
        for _ in range(self.rng.randint(0, 5)):
            fields[self.rng.choice(FIELDS)] = self.value()
        return json.dumps(fields).encode()

    def next(self) -> tuple[str, str, bytes | None, dict[str, str], dict[str, str]]:
        rng, headers = self.rng, {}
        if rng.random() < 0.3:  # any printable key (a control character is refused by the client itself)
            headers["Idempotency-Key"] = "".join(c for c in str(rng.choice(SCALARS))[:400] if c >= " " and c != "\x7f")
        if rng.random() < 0.2:
            headers["Content-Type"] = rng.choice(CONTENT_TYPES)
        roll = rng.random()
        if roll < 0.6:
            return "POST", rng.choice(GENERATIONS if rng.random() < 0.85 else WEBHOOKS), self.body(), {}, headers
        if roll < 0.85:
            job_id = rng.choice(IDS)
            path = rng.choice((*GETS, f"/v1/jobs/{job_id}", f"/v1/videos/{job_id}", f"/v1/videos/{job_id}/content",
                               f"/v1/jobs/{job_id}/content", f"/v1/models/{rng.choice(MODELS)}"))
            query = {rng.choice(QUERY_KEYS): str(rng.choice(SCALARS))[:300] for _ in range(rng.randint(0, 3))}
            return "GET", path, None, query, headers
        return "DELETE", rng.choice((f"/v1/jobs/{rng.choice(IDS)}", f"/v1/videos/{rng.choice(IDS)}")), None, {}, headers


async def answer_problem(daemon: Daemon, request: tuple[str, str, bytes | None, dict[str, str], dict[str, str]]
                         ) -> str | None:
    """What is wrong with the daemon's answer to ``request``, or None."""
    method, path, body, query, headers = request
    async with daemon.session.request(method, daemon.url + path, data=body, params=query, headers=headers) as response:
        text = await response.text(errors="replace")
        if response.status >= 500:
            return f"{response.status}: {text[:300]}"
        if response.status >= 400:
            try:
                error = json.loads(text)["error"]
                assert isinstance(error["message"], str) and error["message"] and isinstance(error["type"], str)
            except (ValueError, KeyError, TypeError, AssertionError):
                return f"{response.status} not in the error shape: {text[:300]}"
    return None


@pytest.mark.parametrize("seed", [1, 2])
async def test_random_requests_get_an_answer_below_500_in_the_error_shape(start_daemon: StartDaemon,
                                                                         seed: int) -> None:
    daemon = await start_daemon(ROUTES.read_text())
    requests = Requests(seed)
    batch = [requests.next() for _ in range(600)]
    problems = await asyncio.gather(*(answer_problem(daemon, request) for request in batch))
    found = [(request[:3], problem) for request, problem in zip(batch, problems) if problem is not None]
    assert not found, found[:5]
