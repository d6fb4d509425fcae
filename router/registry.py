"""Provider registry: built-in and third-party handlers come from the ``tarash_router.providers`` entry
point group (declared in each distribution's pyproject), ``register_provider`` adds or overrides at runtime.
The core never imports a provider module by name.
"""

from __future__ import annotations

import os
import threading
from importlib.metadata import entry_points
from typing import Any

from router.errors import MissingCredentialsError, UnknownProviderError
from router.handler import ProviderHandler
from router.models import AnyConfig

ENTRY_POINT_GROUP = "tarash_router.providers"
MOCK_PROVIDER = "mock"

_registered: dict[str, Any] = {}
_loaded: dict[str, Any] = {}
_lock = threading.Lock()


def register_provider(name: str, handler: Any) -> None:
    """Add or replace the handler used for ``provider == name``.

    ``handler`` is a ``ProviderHandler`` (or any object with its methods), or a class to instantiate.
    """
    if not name or not isinstance(name, str):
        raise ValueError("provider name must be a non-empty string")
    if isinstance(handler, type):
        handler = handler()
    with _lock:
        _registered[name] = handler


def unregister_provider(name: str) -> None:
    """Remove a handler added with ``register_provider`` (built-ins come back)."""
    with _lock:
        _registered.pop(name, None)


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_providers() -> list[str]:
    """Every provider name that can be used: registered at runtime or installed through entry points."""
    return sorted({*_registered, *_entry_points()})


def get_handler(name: str) -> Any:
    """The handler for ``name``; ``UnknownProviderError`` (listing the known names) if there is none."""
    with _lock:
        if name in _registered:
            return _registered[name]
        if name in _loaded:
            return _loaded[name]
    ep = _entry_points().get(name)
    if ep is None:
        raise UnknownProviderError(
            f"unknown provider {name!r}; known providers: {', '.join(known_providers()) or '(none)'}",
            provider=name,
        )
    loaded = ep.load()
    handler = loaded() if isinstance(loaded, type) else loaded
    with _lock:
        return _loaded.setdefault(name, handler)


def handler_for(config: AnyConfig) -> Any:
    """The handler an attempt uses: the mock when ``config.mock`` is enabled, else the config's provider."""
    if config.mock is not None and config.mock.enabled:
        return get_handler(MOCK_PROVIDER)
    return get_handler(config.provider)


def key_env_names(handler: Any, config: AnyConfig) -> tuple[str, ...]:
    """Env vars to read the key from, in order: ``provider_config["api_key_env"]`` then the handler's own."""
    custom = config.provider_config.get("api_key_env")
    names: tuple[str, ...] = (custom,) if isinstance(custom, str) and custom else ()
    return names + tuple(getattr(handler, "api_key_env", ()))


def resolve_api_key(handler: Any, config: AnyConfig) -> AnyConfig:
    """Return ``config`` with its key filled in: ``api_key`` wins, else the first env var that is set.

    Raises ``MissingCredentialsError`` (naming the env vars it looked at) when the handler needs a key and
    none is found, so the attempt is skipped without reaching the vendor.
    """
    needs = getattr(handler, "needs_api_key", None)  # per-config answer (e.g. Google: Vertex uses OAuth)
    required = needs(config) if needs is not None else getattr(handler, "requires_api_key", True)
    if config.api_key or not required:
        return config
    if config.mock is not None and config.mock.enabled:
        return config
    names = key_env_names(handler, config)
    if not names:
        return config  # a handler that names no env var manages its own credentials
    for name in names:
        value = os.environ.get(name)
        if value:
            return config.model_copy(update={"api_key": value})
    raise MissingCredentialsError(
        f"no API key for provider {config.provider!r}: set api_key in the config or the env var "
        + " or ".join(names),
        provider=config.provider,
        model=config.model,
    )


__all__ = [
    "ENTRY_POINT_GROUP",
    "ProviderHandler",
    "get_handler",
    "handler_for",
    "key_env_names",
    "known_providers",
    "register_provider",
    "resolve_api_key",
    "unregister_provider",
]
