"""pytest fixtures: one started emulator per test (``fal_emulator``, ``openai_emulator``...)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.emulators import EMULATORS
from tests.emulators._base import Emulator


def _fixture(vendor: str) -> Callable[..., Any]:
    @pytest.fixture
    async def emulator() -> AsyncIterator[Emulator]:
        async with EMULATORS[vendor]() as emu:
            yield emu

    return emulator


fal_emulator = _fixture("fal")
openai_emulator = _fixture("openai")
azure_openai_emulator = _fixture("azure-openai")
replicate_emulator = _fixture("replicate")
runway_emulator = _fixture("runway")
google_emulator = _fixture("google")
stability_emulator = _fixture("stability")
luma_emulator = _fixture("luma")
