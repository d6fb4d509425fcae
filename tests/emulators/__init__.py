"""Loopback emulators of the vendors' HTTP APIs, with fault injection (see ``_base``)."""

from __future__ import annotations

from typing import Any


class _Registry(dict[str, Any]):
    """Vendor id -> emulator class, imported lazily so one emulator's import never costs the others."""

    _paths = {
        "fal": "tests.emulators.fal:FalEmulator",
        "openai": "tests.emulators.openai:OpenAIEmulator",
        "azure-openai": "tests.emulators.openai:AzureOpenAIEmulator",
        "replicate": "tests.emulators.replicate:ReplicateEmulator",
        "runway": "tests.emulators.runway:RunwayEmulator",
        "google": "tests.emulators.google:GoogleEmulator",
        "stability": "tests.emulators.stability:StabilityEmulator",
        "luma": "tests.emulators.luma:LumaEmulator",
    }

    def __missing__(self, vendor: str) -> Any:
        import importlib

        module, _, name = self._paths[vendor].partition(":")
        cls = getattr(importlib.import_module(module), name)
        self[vendor] = cls
        return cls

    def names(self) -> list[str]:
        return sorted(self._paths)


EMULATORS = _Registry()
