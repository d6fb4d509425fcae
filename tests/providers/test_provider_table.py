"""The README's capability table is generated from the handlers; this keeps the two from drifting apart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_holds_the_current_capability_table() -> None:
    check = subprocess.run([sys.executable, "scripts/provider_table.py", "--check"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr + "\n(run .venv/bin/python scripts/provider_table.py and paste it)"


def test_readme_provider_table_names_each_providers_default_base_url() -> None:
    from router.errors import ConfigurationError
    from router.models import VideoGenerationConfig
    from router.registry import get_handler, known_providers

    rows: dict[str, str] = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("| `") and " | " in line:
            rows.setdefault(line.split(" | ")[0][3:-1], line)  # the provider table comes before the capability one
    for name in known_providers():
        handler = get_handler(name)
        if not hasattr(handler, "base_url"):
            continue  # the mock: no network
        config = VideoGenerationConfig(provider=name, model="m")
        try:
            default = handler.base_url(config).rstrip("/")
        except (ConfigurationError, KeyError):  # Azure: every resource has its own endpoint, none by default
            assert "required" in rows[name], f"README: {name} has no default base_url; its row must say it is required"
            continue
        assert f"`{default}`" in rows[name], f"README's provider table row for {name} does not name {default}"
