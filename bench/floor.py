"""(b2) for ``bench.overhead --floor``: the least a router honouring the contract does per request, on our stack.

The bare pass-through (b) forwards bytes. A router that keeps the public contract must, per request, at the very
least: parse the body and validate it against the spec's request model (a malformed request is a 4xx), build the
vendor's body from it, call the vendor, parse its answer, build the spec's normalized response with its
execution metadata, answer in the OpenAI shape, give the request an id, write one JSON log line and count the
request in Prometheus. This server does exactly that with the router's own models and chosen libraries
(pydantic, aiohttp, structlog, prometheus-client) and nothing else: no routes file, fallback, breakers, limits,
budgets, pricing, redaction or job store. Its CPU per request over (b)'s bounds what any router on CPython and
aiohttp can reach: where the floor itself is over 1.3x (b), the 1.3x goal is out of reach of the design, not of
the tuning.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
import time
import uuid
from datetime import datetime, timezone

import aiohttp
import prometheus_client
import structlog
from aiohttp import web

from router.gc_tuning import LIGHT
from router.models import AttemptMetadata, ExecutionMetadata, ImageGenerationRequest, ImageGenerationResponse


def floor_app(upstream: str) -> web.Application:
    structlog.configure(
        processors=[structlog.processors.TimeStamper(fmt="iso"), structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(sys.stdout), cache_logger_on_first_use=True,
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    log = structlog.get_logger()
    registry = prometheus_client.CollectorRegistry()
    requests = prometheus_client.Counter("floor_requests_total", "requests", ["route", "status"], registry=registry)
    latency = prometheus_client.Histogram("floor_request_duration_seconds", "latency", ["route"], registry=registry)
    session: dict[str, aiohttp.ClientSession] = {}

    async def startup(app: web.Application) -> None:
        session["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1024))

    async def cleanup(app: web.Application) -> None:
        await session["s"].close()

    async def generate(request: web.Request) -> web.Response:
        began, started_at = time.perf_counter(), datetime.now(timezone.utc)
        request_id = uuid.uuid4().hex
        try:
            body = json.loads(await request.read())
            route = body.pop("model")
            body.pop("response_format", None)
            spec = ImageGenerationRequest.model_validate(body)
        except (ValueError, KeyError, AttributeError) as exc:
            return web.json_response({"error": {"type": "invalid_request_error", "message": str(exc)}}, status=400)
        vendor_body = {"model": "dall-e-2", "prompt": spec.prompt, "n": spec.n or 1, "response_format": "url"}
        async with session["s"].post(upstream, json=vendor_body, headers={"Authorization": "Bearer test-key"},
                                     timeout=aiohttp.ClientTimeout(total=60)) as vendor:
            answer = await vendor.json()
        attempt = AttemptMetadata(provider="openai", model="dall-e-2", attempt_number=1, started_at=started_at,
                                  ended_at=datetime.now(timezone.utc), status="success")
        response = ImageGenerationResponse(
            request_id=request_id, images=[item["url"] for item in answer["data"]], raw_response=answer,
            execution_metadata=ExecutionMetadata(total_attempts=1, successful_attempt=1, attempts=[attempt],
                                                 fallback_triggered=False, configs_in_chain=1))
        data = [{"url": image, "revised_prompt": response.revised_prompt} for image in response.images]
        elapsed = time.perf_counter() - began
        requests.labels(route, "200").inc()
        latency.labels(route).observe(elapsed)
        log.info("http_request", method=request.method, path=request.path, status=200, route=route,
                 latency_ms=round(elapsed * 1000, 2), request_id=request_id)
        return web.json_response({"created": int(time.time()), "data": data}, headers={"X-Request-ID": request_id})

    app = web.Application()
    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    app.router.add_post("/v1/images/generations", generate)
    return app


async def run_floor(upstream: str, port: int) -> None:
    runner = web.AppRunner(floor_app(upstream), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    # The router's own GC tuning for requests (router/cli.py, router/gc_tuning.py): without it the floor pays
    # collections the router does not.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*LIGHT)
    await asyncio.Event().wait()
