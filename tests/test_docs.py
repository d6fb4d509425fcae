"""The docs/ reference stays in step with the code: every setting, every public model field (with its default)
and every metric is documented, and nothing documented is gone. When one of these fails, update docs/."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

import router
from router.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
#: Every public model (and handler dataclass) of ``import router``: docs/models.md must list each one's fields.
MODELS: list[type] = [
    obj for obj in (getattr(router, name) for name in sorted(router.__all__))
    if isinstance(obj, type) and (issubclass(obj, BaseModel) or dataclasses.is_dataclass(obj))
]
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|(.*)$")


def table_rows(text: str) -> dict[str, list[str]]:
    """First-column names of markdown table rows -> their other cells."""
    rows = {}
    for line in text.splitlines():
        if match := _ROW.match(line):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", match[2])]
            rows[match[1]] = cells[:-1] if cells and cells[-1] == "" else cells
    return rows


def section(text: str, title: str) -> str:
    """The text under ``## title`` up to the next ``##`` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"docs/models.md has no '## {title}' section"
    return match[1]


def rendered(value: Any) -> str | None:
    """How a default is written in the docs' default column, or None when it is not a plain value."""
    if value is None or isinstance(value, bool | int | float):
        return f"`{value!r}`"
    try:
        return f"`{json.dumps(value)}`"
    except TypeError:
        return None


def fields_of(cls: type) -> dict[str, str | None]:
    """Field name -> its documented default (``required``, ``computed``, a rendering, or None: not checked)."""
    if dataclasses.is_dataclass(cls):
        out: dict[str, str | None] = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = rendered(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = rendered(f.default_factory())
            else:
                out[f.name] = "required"
        return out
    assert issubclass(cls, BaseModel)
    out = {}
    for name, info in cls.model_fields.items():
        if info.is_required():
            out[name] = "required"
        elif info.default_factory is not None:
            out[name] = rendered(info.default_factory())  # type: ignore[call-arg]
        else:
            out[name] = rendered(info.default) if info.default is not PydanticUndefined else None
    out.update({name: "computed" for name in cls.model_computed_fields})
    return out


def test_the_public_models_are_the_ones_expected() -> None:
    # A guard on the discovery above: a refactor that hides the models from router.__all__ must not pass silently.
    assert {"VideoGenerationConfig", "VideoGenerationResponse", "AttemptMetadata", "MockConfig", "PollStatus"} <= {
        cls.__name__ for cls in MODELS}


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_every_public_model_field_is_documented_with_its_default(cls: type) -> None:
    rows = table_rows(section((DOCS / "models.md").read_text(), cls.__name__))
    fields = fields_of(cls)
    missing = sorted(set(fields) - set(rows))
    stale = sorted(set(rows) - set(fields))
    assert not missing, f"docs/models.md '## {cls.__name__}' lacks fields {missing}"
    assert not stale, f"docs/models.md '## {cls.__name__}' documents fields that do not exist: {stale}"
    for name, default in fields.items():
        if default is not None:
            assert rows[name][1] == default, f"{cls.__name__}.{name}: docs say {rows[name][1]}, code has {default}"


def test_every_setting_is_documented_with_its_default() -> None:
    rows = table_rows((DOCS / "settings.md").read_text())
    names = {f"TARASH_ROUTER_{name.upper()}": info for name, info in Settings.model_fields.items()}
    missing = sorted(set(names) - set(rows))
    stale = sorted(n for n in rows if n.startswith("TARASH_ROUTER_") and n not in names)
    assert not missing, f"docs/settings.md lacks {missing}"
    assert not stale, f"docs/settings.md documents settings that do not exist: {stale}"
    for name, info in names.items():
        default = info.get_default(call_default_factory=True)
        cell = rows[name][0].strip("`")
        if default is None:
            assert cell == "unset", f"{name}: default is unset, docs say {cell!r}"
        elif isinstance(default, bool):
            assert cell == str(default).lower(), f"{name}: default {default}, docs say {cell!r}"
        elif isinstance(default, int | float):
            assert float(cell) == default, f"{name}: default {default}, docs say {cell!r}"
        elif isinstance(default, str | Path):
            assert cell == str(default), f"{name}: default {default}, docs say {cell!r}"


def test_docs_index_and_readme_link_every_page() -> None:
    index = (DOCS / "README.md").read_text()
    readme = (DOCS.parent / "README.md").read_text()
    for page in ("models.md", "http-api.md", "settings.md", "metrics.md", "performance.md"):
        assert (DOCS / page).is_file()
        assert f"]({page})" in index, f"docs/README.md does not link {page}"
        assert f"](docs/{page})" in readme, f"README.md does not link docs/{page}"
    assert "](docs/README.md)" in readme or "](docs/)" in readme


def test_every_error_attribute_is_documented() -> None:
    rows = table_rows(section((DOCS / "models.md").read_text(), "Errors"))
    attributes = set(vars(router.TarashError("x"))) | {"retryable"}  # retryable: a class default, per instance too
    assert sorted(attributes - set(rows)) == [], "docs/models.md '## Errors' lacks these TarashError attributes"
    assert sorted(set(rows) - attributes) == [], "docs/models.md '## Errors' documents attributes that do not exist"
