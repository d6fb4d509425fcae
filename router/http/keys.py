"""The typed keys of the daemon's aiohttp app and of its requests.

A leaf module: it imports no handler module and not the app factory, so every handler and middleware imports
it and nothing has to import upward (or inside a function) to reach the daemon's services.
"""

from __future__ import annotations

from aiohttp import web

from router.daemon import Daemon
from router.http.create_gate import CreateGate
from router.http.intake import Limits

#: The daemon's services (``router.daemon``): handlers read what they need from ``request.app[DAEMON]``.
DAEMON = web.AppKey("daemon", Daemon)
#: The bound on job creates in progress (``MAX_CREATES_IN_PROGRESS``).
CREATE_GATE = web.AppKey("create_gate", CreateGate)
#: What a generation request may hold (``MAX_PROMPT_CHARS``), made once from the settings.
INTAKE_LIMITS = web.AppKey("intake_limits", Limits)
#: Client identity of the request (a token fingerprint, never the token), for job ownership.
CLIENT = web.RequestKey("client", str)
#: The client token's scopes (``admin``...).
SCOPES = web.RequestKey("scopes", frozenset)
