"""The package's layering, read from its source: who may import the driver, and no import cycles.

Only the query layer (``queries``: statements, the driver's types and errors, connecting) and
the notifier (a LISTEN connection's callbacks) import asyncpg; everything else goes through
``queries``, so another driver means one layer to replace.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

PACKAGE = Path(__file__).resolve().parents[2] / "aiojobs_pg"
DRIVER_LAYER = {"aiojobs_pg.queries", "aiojobs_pg.notifier"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in the file (inside functions and TYPE_CHECKING too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = node.module or ""
            target = (f"{base}.{module}" if module else base) if node.level else module
            # ``from . import enqueue`` imports the module aiojobs_pg.enqueue; ``from .models import Job``
            # imports aiojobs_pg.models.
            submodules = {f"{target}.{alias.name}" for alias in node.names
                          if (PACKAGE.parent / f"{target}.{alias.name}".replace(".", "/")).with_suffix(".py").exists()}
            found.update(submodules if submodules else {target})
    return found


MODULES = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_the_module_list_is_read() -> None:
    assert {"aiojobs_pg.app", "aiojobs_pg.queries", "aiojobs_pg.http.api"} <= MODULES.keys()


def test_only_the_driver_layer_imports_asyncpg() -> None:
    users = {name for name, found in MODULES.items() if any(m == "asyncpg" or m.startswith("asyncpg.")
                                                             for m in found)}
    assert users <= DRIVER_LAYER, f"asyncpg imported outside the driver layer: {sorted(users - DRIVER_LAYER)}"
    assert "aiojobs_pg.queries" in users


def test_no_import_cycles() -> None:
    # Edges between the package's own modules, function-level and TYPE_CHECKING imports included.
    graph = {name: {m for m in found if m in MODULES and m != name} for name, found in MODULES.items()}
    cycles = []

    def visit(name: str, path: list[str]) -> None:
        for target in graph[name]:
            if target in path:
                cycles.append([*path[path.index(target):], target])
            elif target not in done:
                visit(target, [*path, target])
        done.add(name)

    done: set[str] = set()
    for name in graph:
        if name not in done:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


# The psycopg and SQLAlchemy helpers (aiojobs_pg.drivers) load their driver only when they are used.
def test_the_helpers_import_no_driver() -> None:
    code = ("import sys, aiojobs_pg, aiojobs_pg.drivers; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('psycopg', 'sqlalchemy')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
