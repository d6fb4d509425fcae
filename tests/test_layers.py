"""The package's shape, checked from the source: nothing imports upward, no import cycle, no cycle hidden behind
an import inside a function. (README, "Development", describes the layers.)"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The core: what the library uses. It never reaches the daemon, the HTTP layer or a provider module.
CORE = ("router.models", "router.errors", "router.provider_job", "router.handler_checks", "router.handler",
        "router.steps", "router.observers", "router.orchestrator", "router.policy", "router.breakers",
        "router.limits", "router.registry", "router.api", "router.sync", "router.jobs")
UPWARD = ("router.http", "router.daemon", "router.cli", "providers")
#: The CLI imports lazily so ``tarash-router check`` starts fast; nothing else may import inside a function.
LAZY_IMPORTS_ALLOWED = {"router.cli"}


def modules() -> Iterator[tuple[str, ast.Module]]:
    for package in ("router", "providers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, ast.parse(path.read_text(), str(path))


def imported(node: ast.AST, module: str) -> list[str]:
    """Project modules an import statement names (``from a import b`` counts ``a.b`` when that is a module)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    else:
        return []
    return [name for name in names if name.split(".")[0] in ("router", "providers") and name != module]


def top_level_imports(tree: ast.Module, module: str) -> set[str]:
    """Imports that run when the module is imported (``if TYPE_CHECKING:`` blocks excluded)."""
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else ():
            found.update(imported(child, module))
    return found


SOURCES = dict(modules())
KNOWN = set(SOURCES)


def resolve(names: set[str]) -> set[str]:
    return {name for name in names if name in KNOWN}


def test_no_import_inside_a_function_outside_the_cli() -> None:
    lazy = []
    for module, tree in SOURCES.items():
        if module in LAZY_IMPORTS_ALLOWED:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lazy += [f"{module}.{node.name}: {name}" for child in ast.walk(node)
                         for name in resolve(set(imported(child, module)))]
    assert not lazy, f"imports inside functions (a hidden cycle or a missing top-level import): {lazy}"


def test_the_core_never_imports_upward() -> None:
    upward = [f"{module} -> {name}" for module, tree in SOURCES.items() if module.startswith(CORE)
              for name in resolve(top_level_imports(tree, module)) if name.startswith(UPWARD)]
    assert not upward, upward


def test_only_the_cli_imports_the_app_factory_and_only_http_and_cli_import_http() -> None:
    wrong = [f"{module} -> {name}" for module, tree in SOURCES.items()
             for name in resolve(top_level_imports(tree, module))
             if (name == "router.http.app" and module != "router.cli")
             or (name.startswith("router.http") and not module.startswith(("router.http", "router.cli")))]
    assert not wrong, wrong


def test_no_import_cycle() -> None:
    graph = {module: resolve(top_level_imports(tree, module)) for module, tree in SOURCES.items()}
    # A package's __init__ re-exporting its submodules is not a cycle with them.
    for module, edges in graph.items():
        graph[module] = {edge for edge in edges if not (module.startswith(edge + ".") and edge in graph)}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for edge in sorted(graph[module]):
            if state.get(edge) == 1:
                cycles.append([*path[path.index(edge):], edge] if edge in path else [module, edge])
            elif edge not in state:
                visit(edge, [*path, edge])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_router_reaches_providers_only_through_the_handler_interface() -> None:
    """Provider modules are found through the registry (entry points) and used through ``ProviderHandler`` and
    its hooks (``webhook_secret``, ``webhook_scheme``...); no router module imports ``providers`` itself, not
    even inside a function (``router.webhooks.inbound`` once reached into ``providers._engine``)."""
    leaks = [f"{module} -> {name}" for module, tree in SOURCES.items() if module.startswith("router")
             for node in ast.walk(tree) for name in imported(node, module) if name.split(".")[0] == "providers"]
    assert not leaks, leaks
