"""Print the README's provider capability table from the handlers' own capability data.

    .venv/bin/python scripts/provider_table.py            # print the table
    .venv/bin/python scripts/provider_table.py --check    # exit 1 if README.md does not contain it verbatim

One row per installed provider (entry points), one column per capability of ``providers/_engine/capabilities.py``.
A provider's row is its provider-wide ``capabilities``; most narrow them per model (``capabilities_for``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from providers._engine.capabilities import VOCABULARY
from router.registry import get_handler, known_providers

COLUMNS = [(kind, name) for kind, names in VOCABULARY.items() for name in names]
README = Path(__file__).resolve().parent.parent / "README.md"


def row(name: str) -> str:
    handler = get_handler(name)
    # The mock declares no table: it plays any capability it is configured for.
    caps = getattr(handler, "capabilities", None) or {kind: frozenset(names) for kind, names in VOCABULARY.items()}
    env = ", ".join(f"`{e}`" for e in getattr(handler, "api_key_env", ())) or "—"
    cells = ["✓" if capability in caps.get(kind, ()) else "" for kind, capability in COLUMNS]
    return f"| `{name}` | {env} | " + " | ".join(cells) + " |"


def table() -> str:
    header = ["provider", "env var", *(f"{kind}: {name}" for kind, name in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + [row(name) for name in known_providers()])


def main(argv: list[str]) -> int:
    if "--check" in argv:
        if table() in README.read_text():
            return 0
        print("README.md's capability table is out of date; regenerate it with scripts/provider_table.py", file=sys.stderr)
        return 1
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
