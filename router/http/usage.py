"""``GET /v1/usage``: a client's own spend today and this month (UTC), its budgets and what is left, per route
and provider; an admin token sees every client (or one: ``?client=<name>``)."""

from __future__ import annotations

from aiohttp import web

from router.http.answers import json_response
from router.http.errors import ApiError
from router.http.keys import CLIENT, DAEMON, SCOPES


async def usage(request: web.Request) -> web.Response:
    budgets = request.app[DAEMON].budgets
    assert budgets is not None
    asked = request.query.get("client")
    if "admin" in request[SCOPES]:
        if asked is None:
            return json_response({"object": "list", "data": await budgets.usage(None)})
        (view,) = await budgets.usage(asked)
        return json_response({"object": "usage", **view})
    if asked is not None and asked != request[CLIENT]:
        raise ApiError(403, "only admin tokens see other clients' usage", "permission_error", "admin_required",
                       param="client")
    (view,) = await budgets.usage(request[CLIENT])
    return json_response({"object": "usage", **view})


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/usage", usage)
