"""A job created in this process runs from the request and route configs it was created from, not from its stored
JSON validated again (``JobService._execute``): that is only sound if validating the stored JSON gives equal objects.
These tests hold that for every route of the shipped routes files, every request shape, and a lowered chain."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from router.jobs.memory import MemoryJobStore
from router.jobs.service import JobService
from router.models import CONFIG_TYPES, REQUEST_TYPES
from router.policy import AttemptPolicy
from router.routes import Route, load

ROOT = Path(__file__).resolve().parents[2]
ROUTES_FILES = [ROOT / "routes.toml", *sorted((ROOT / "examples").glob("*.toml"))]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))

REQUESTS: dict[str, list[dict[str, Any]]] = {
    "video": [
        {"prompt": "a fox"},
        {"prompt": "a fox", "negative_prompt": "rain", "aspect_ratio": "9:16", "seed": 7, "duration_seconds": 5,
         "resolution": "720p", "generate_audio": True, "number_of_videos": 2, "enhance_prompt": False,
         "image_list": [{"image": "https://cdn.example/a.png", "type": "first_frame"},
                        {"image": base64.b64encode(PNG).decode(), "type": "last_frame"},
                        {"image": {"content": base64.b64encode(PNG).decode(), "content_type": "image/png"},
                         "type": "reference"}],
         "video": "https://cdn.example/in.mp4", "loop": True, "extra_params": {"cfg": 0.5, "nested": {"a": [1]}}},
    ],
    "image": [
        {"prompt": "a fox"},
        {"prompt": "a fox", "size": "1024x768", "quality": "hd", "style": "vivid", "n": 3, "seed": 1,
         "mask_image": {"content": base64.b64encode(PNG).decode(), "content_type": "image/png"},
         "image_list": [{"image": f"data:image/png;base64,{base64.b64encode(PNG).decode()}", "type": "reference"}],
         "guidance": 3},
    ],
}


def routes() -> list[Route]:
    found = [route for path in ROUTES_FILES for route in load(path).routes.values()]
    assert {route.kind for route in found} == {"video", "image"}
    return found


@pytest.mark.parametrize("route", routes(), ids=lambda route: route.name)
async def test_stored_json_validates_to_the_objects_a_created_job_runs_from(route: Route) -> None:
    service = JobService(MemoryJobStore(), max_running=0)  # queued: nothing runs, only the record is made
    for fields in REQUESTS[route.kind]:
        for chain_route in (route, route.with_ceiling(0.01)):
            request = chain_route.build_request(fields)
            job, created = await service.create(chain_route, request)
            assert created
            assert REQUEST_TYPES[route.kind].model_validate(job.request) == request
            stored = tuple(CONFIG_TYPES[route.kind].model_validate(config) for config in job.chain)
            assert stored == chain_route.chain
            assert tuple(AttemptPolicy.of(route.kind, config) for config in stored) == chain_route.policies


def test_route_policies_are_worked_out_once_per_route() -> None:
    for route in routes():
        assert route.policies is route.policies
        assert route.policies == tuple(AttemptPolicy.of(route.kind, config) for config in route.chain)
    again = {route.name: route for route in load(ROOT / "routes.toml").routes.values()}
    for route in load(ROOT / "routes.toml").routes.values():
        assert route.policies == again[route.name].policies and route.policies is not again[route.name].policies
