"""Where vendor webhooks arrive, and how such a path is written in logs (its token authenticates a delivery)."""

from __future__ import annotations

PATH_PREFIX = "/v1/webhooks/"


def redact_path(path: str) -> str:
    """``path`` fit for logs: a webhook's token is replaced."""
    if path.startswith(PATH_PREFIX):
        provider = path[len(PATH_PREFIX):].split("/", 1)[0]
        return f"{PATH_PREFIX}{provider}/<token>"
    return path
