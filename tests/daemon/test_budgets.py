"""Named clients and their budgets through the running daemon: 402 budget_exceeded once spent (how much is
left, when it resets), recovery the next UTC day and month (injected clock), spend that survives a restart,
budgets hot-reloaded with routes.toml, GET /v1/usage (own spend; admins see everyone), jobs and SSE alike."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from tests.daemon.conftest import StartDaemon

KEYS = "alice=tok-alice,bob=tok-bob,ops=tok-ops:admin,legacy-token-1,legacy-admin-2:admin"


def routes(daily: float = 1.0, monthly: float = 1.5) -> str:
    return f"""
[clients."alice"]
daily_budget_usd = {daily}
monthly_budget_usd = {monthly}

[routes."video-priced"]
kind = "video"
[[routes."video-priced".attempts]]
provider = "mock"
model = "mock-video"
price = {{ per_video = 0.4 }}
mock = {{ polling = {{ status_sequence = ["completed"], delay_between_updates = 0 }} }}
"""


def slow_routes() -> str:
    """``routes()`` whose generations run 30 s: long enough to look at what they hold while they run."""
    return routes().replace('status_sequence = ["completed"], delay_between_updates = 0',
                            'status_sequence = ["processing", "completed"], delay_between_updates = 30')


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


GENERATE = {"model": "video-priced", "prompt": "fox"}


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 12, 30, 23, 0, tzinfo=timezone.utc))


async def test_a_budget_refuses_once_spent_and_recovers_the_next_day_and_month(
        start_daemon: StartDaemon, clock: Clock) -> None:
    daemon = await start_daemon(routes(), clock=clock, api_keys=KEYS)
    for _ in range(2):
        status, body, _ = await daemon.request("POST", "/v1/video/generations", json=GENERATE, headers=auth("tok-alice"))
        assert status == 200 and body["execution_metadata"]["total_cost_usd"] == 0.4
    status, body, _ = await daemon.request("POST", "/v1/video/generations", json=GENERATE, headers=auth("tok-alice"))
    assert status == 402 and body["error"]["code"] == "budget_exceeded" and body["error"]["type"] == "budget_exceeded_error"
    assert "has $0.2000 left of its daily budget of $1" in body["error"]["message"]
    assert "resets 2026-12-31T00:00:00Z" in body["error"]["message"] and "estimated at $0.4000" in body["error"]["message"]
    assert "execution_metadata" not in body  # refused before any attempt
    # Bob has no budget; a legacy unnamed token still works.
    for token in ("tok-bob", "legacy-token-1"):
        assert (await daemon.request("POST", "/v1/video/generations", json=GENERATE, headers=auth(token)))[0] == 200

    clock.now += timedelta(hours=2)  # 2026-12-31 01:00: a new day, the same month ($0.80 of $1.50 spent)
    assert (await daemon.request("POST", "/v1/video/generations", json=GENERATE, headers=auth("tok-alice")))[0] == 200
    status, body, _ = await daemon.request("POST", "/v1/video/generations", json=GENERATE, headers=auth("tok-alice"))
    assert status == 402 and "of its monthly budget of $1.5" in body["error"]["message"]
    assert "resets 2027-01-01T00:00:00Z" in body["error"]["message"]

    clock.now += timedelta(days=1)  # 2027-01-01: a new month
    assert (await daemon.request("POST", "/v1/video/generations", json=GENERATE, headers=auth("tok-alice")))[0] == 200


async def test_spend_survives_a_restart(start_daemon: StartDaemon, clock: Clock) -> None:
    first = await start_daemon(routes(daily=0.8), clock=clock, api_keys=KEYS)
    for _ in range(2):
        assert (await first.request("POST", "/v1/video/generations", json=GENERATE, headers=auth("tok-alice")))[0] == 200
    await first.server.close()
    second = await start_daemon(routes(daily=0.8), clock=clock, api_keys=KEYS)  # the same DATA_DIR
    status, body, _ = await second.request("GET", "/v1/usage", headers=auth("tok-alice"))
    assert status == 200 and body["today"]["spent_usd"] == 0.8 and body["today"]["remaining_usd"] == 0.0
    assert (await second.request("POST", "/v1/video/generations", json=GENERATE, headers=auth("tok-alice")))[0] == 402


async def test_budgets_are_hot_reloaded_with_routes_toml(start_daemon: StartDaemon, clock: Clock) -> None:
    daemon = await start_daemon(routes(daily=0.4), clock=clock, api_keys=KEYS)
    assert (await daemon.request("POST", "/v1/video/generations", json=GENERATE, headers=auth("tok-alice")))[0] == 200
    assert (await daemon.request("POST", "/v1/video/generations", json=GENERATE, headers=auth("tok-alice")))[0] == 402
    daemon.routes_path.write_text(routes(daily=5.0, monthly=5.0))
    assert daemon.state.routes.reload()
    assert (await daemon.request("POST", "/v1/video/generations", json=GENERATE, headers=auth("tok-alice")))[0] == 200


async def test_usage_shows_a_client_its_own_spend_and_admins_everyone(start_daemon: StartDaemon, clock: Clock) -> None:
    daemon = await start_daemon(routes(), clock=clock, api_keys=KEYS)
    for token in ("tok-alice", "tok-bob", "tok-bob"):
        assert (await daemon.request("POST", "/v1/video/generations", json=GENERATE, headers=auth(token)))[0] == 200
    status, body, _ = await daemon.request("GET", "/v1/usage", headers=auth("tok-alice"))
    assert status == 200 and body["object"] == "usage" and body["client"] == "alice"
    assert body["today"] == {"from": "2026-12-30", "to": "2026-12-30", "spent_usd": 0.4, "reserved_usd": 0.0,
                             "budget_usd": 1.0, "remaining_usd": 0.6, "resets_at": "2026-12-31T00:00:00Z"}
    assert body["month"]["from"] == "2026-12-01" and body["month"]["remaining_usd"] == pytest.approx(1.1)
    assert body["by_route"] == [{"route": "video-priced", "provider": "mock", "model": "mock-video",
                                 "today_usd": 0.4, "month_usd": 0.4, "generations_month": 1}]
    status, body, _ = await daemon.request("GET", "/v1/usage?client=bob", headers=auth("tok-alice"))
    assert status == 403 and body["error"]["code"] == "admin_required"
    status, body, _ = await daemon.request("GET", "/v1/usage", headers=auth("tok-ops"))
    assert status == 200 and body["object"] == "list"
    assert {c["client"]: c["today"]["spent_usd"] for c in body["data"]} == {"alice": 0.4, "bob": 0.8}
    status, body, _ = await daemon.request("GET", "/v1/usage?client=bob", headers=auth("legacy-admin-2"))
    assert status == 200 and body["client"] == "bob" and body["by_route"][0]["generations_month"] == 2
    assert (await daemon.request("GET", "/v1/usage"))[0] == 401


async def test_jobs_and_streams_are_refused_before_anything_starts(start_daemon: StartDaemon, clock: Clock) -> None:
    daemon = await start_daemon(routes(daily=0.4), clock=clock, api_keys=KEYS)
    status, body, _ = await daemon.request("POST", "/v1/jobs", json=GENERATE, headers=auth("tok-alice"))
    assert status == 202
    job_id = body["id"]
    # The first job holds its estimate while it runs (or has spent it): nothing is left for a second one.
    status, refused, _ = await daemon.request("POST", "/v1/jobs", json=GENERATE, headers=auth("tok-alice"))
    assert status == 402 and refused["error"]["code"] == "budget_exceeded"
    for _ in range(500):
        if (await daemon.request("GET", f"/v1/jobs/{job_id}", headers=auth("tok-alice")))[1]["status"] == "completed":
            break
        await asyncio.sleep(0.01)
    status, usage, _ = await daemon.request("GET", "/v1/usage", headers=auth("tok-alice"))
    assert usage["today"]["spent_usd"] == 0.4
    status, body, headers = await daemon.request("POST", "/v1/video/generations", json=GENERATE,
                                                 headers={**auth("tok-alice"), "Accept": "text/event-stream"})
    assert status == 402 and headers["Content-Type"].startswith("application/json")
    (listed,) = (await daemon.request("GET", "/v1/jobs", headers=auth("tok-alice")))[1]["data"]  # the refused one is not stored
    assert listed["id"] == job_id and listed["status"] == "completed"


def test_api_keys_name_clients_and_old_forms_keep_working() -> None:
    from router.settings import Settings

    tokens = Settings(_env_file=None, api_keys="alice=tok1, bob=tok2:admin,plain,dG9rZW4=,dG9r==:admin,alice=tok3").client_tokens()
    assert {t: (c.name, set(c.scopes)) for t, c in tokens.items() if not c.name.startswith("client-")} == {
        "tok1": ("alice", set()), "tok2": ("bob", {"admin"}), "tok3": ("alice", set())}
    # Unnamed tokens (base64 padding included) are known by their fingerprint, as before.
    assert {t for t, c in tokens.items() if c.name.startswith("client-")} == {"plain", "dG9rZW4=", "dG9r=="}
    assert tokens["dG9r=="].scopes == {"admin"}


async def test_a_retried_job_post_gets_its_job_back_even_once_the_budget_is_spent(
        start_daemon: StartDaemon, clock: Clock) -> None:
    daemon = await start_daemon(routes(daily=0.4), clock=clock, api_keys=KEYS)
    headers = {**auth("tok-alice"), "Idempotency-Key": "order-42"}
    status, first, _ = await daemon.request("POST", "/v1/jobs", json=GENERATE, headers=headers)
    assert status == 202
    for _ in range(500):
        if (await daemon.request("GET", f"/v1/jobs/{first['id']}", headers=headers))[1]["status"] == "completed":
            break
        await asyncio.sleep(0.01)
    status, again, _ = await daemon.request("POST", "/v1/jobs", json=GENERATE, headers=headers)
    assert status == 202 and again["id"] == first["id"]  # the budget ($0.40) is spent: a new job would get 402
    assert (await daemon.request("POST", "/v1/jobs", json=GENERATE, headers=auth("tok-alice")))[0] == 402


async def test_a_client_without_a_budget_reserves_nothing(start_daemon: StartDaemon, clock: Clock) -> None:
    """As the README says, and as on PostgreSQL: on SQLite a running job of bob's (no budget) held its estimate."""
    daemon = await start_daemon(slow_routes(), clock=clock, api_keys=KEYS)
    status, job, _ = await daemon.request("POST", "/v1/jobs", json=GENERATE, headers=auth("tok-bob"))
    assert status == 202
    _, usage, _ = await daemon.request("GET", "/v1/usage", headers=auth("tok-bob"))
    assert (usage["today"]["reserved_usd"], usage["today"]["budget_usd"], usage["today"]["remaining_usd"]) == \
        (0.0, None, None)
    assert (await daemon.request("DELETE", f"/v1/jobs/{job['id']}", headers=auth("tok-bob")))[0] == 200


async def test_usage_counts_what_running_generations_hold(start_daemon: StartDaemon, clock: Clock) -> None:
    """``reserved_usd``: the estimates of generations still running, which an admission counts too, so
    ``remaining_usd`` is what the next request can get (this process's, on SQLite)."""
    daemon = await start_daemon(slow_routes(), clock=clock, api_keys=KEYS)
    status, job, _ = await daemon.request("POST", "/v1/jobs", json=GENERATE, headers=auth("tok-alice"))
    assert status == 202
    _, usage, _ = await daemon.request("GET", "/v1/usage", headers=auth("tok-alice"))
    assert (usage["today"]["spent_usd"], usage["today"]["reserved_usd"], usage["today"]["remaining_usd"]) == \
        (0.0, 0.4, 0.6)
    assert (await daemon.request("DELETE", f"/v1/jobs/{job['id']}", headers=auth("tok-alice")))[0] == 200
    _, usage, _ = await daemon.request("GET", "/v1/usage", headers=auth("tok-alice"))
    assert usage["today"]["reserved_usd"] == 0.0 and usage["today"]["remaining_usd"] == 1.0
