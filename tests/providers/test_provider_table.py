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
