"""pipeline_lib imports only downward: every module sits on one floor of the map in
docs/ARCHITECTURE.md, imports modules on its own floor or below, and no import circle exists.

Every `import` / `from ... import` statement counts, inside functions too (a lazy import is still
a dependency, it only runs later); the ones under `if TYPE_CHECKING:` do not (annotations only,
never executed). A name imported by string (`importlib.import_module`) is no statement, so only
the modules in STRING_IMPORTS may do it: the family registry, `lazy` (a package's names on first use), an srun
task's worker (`engine.taskrun`, within pipeline_lib), the CLI.
"""
from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "pipeline_lib"

ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"


def read_floors() -> dict[str, list[str]]:
    """{floor: [module names]}, bottom to top, from the table under "## The floors" in docs/ARCHITECTURE.md,
    the one place the floors are written ("pipeline_lib" alone is the package's __init__: its version)."""
    section = ARCHITECTURE.read_text(encoding="utf-8").split("## The floors", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| ")][1:]  # below the header
    return {name.strip(): re.findall(r"`([\w.]+)`", modules) for name, modules in rows}


FLOORS = read_floors()
LEVEL = {("pipeline_lib" if name == "pipeline_lib" else f"pipeline_lib.{name}"): level
         for level, names in enumerate(FLOORS.values()) for name in names}
FLOOR_NAMES = list(FLOORS)
STRING_IMPORTS = {"pipeline_lib.registry", "pipeline_lib.lazy", "pipeline_lib.engine.taskrun", "pipeline_lib.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def floor(module: str) -> int | None:
    """Index in FLOORS of the module's own entry, or of the nearest package above it with one."""
    if module == "pipeline_lib":
        return LEVEL[module]
    parts = module.split(".")
    return next((LEVEL[p] for n in range(len(parts), 1, -1) if (p := ".".join(parts[:n])) in LEVEL), None)


def _statements(node: ast.AST):
    """Import nodes under `node`, skipping `if TYPE_CHECKING:` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            yield from (n for c in child.orelse for n in [c, *_statements(c)] if isinstance(n, (ast.Import, ast.ImportFrom)))
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _statements(child)


def imports(module: str) -> list[tuple[str, int]]:
    """(imported pipeline_lib module, line) of every import statement in `module`."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _statements(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "pipeline_lib"}
            continue
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]) if node.level else ""
        source = ".".join(p for p in (base, node.module) if p)
        if source.split(".")[0] == "pipeline_lib":  # `from .x import name`: name is a module, or a name in .x
            found |= {(f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source, node.lineno)
                      for a in node.names}
    return sorted(found)


GRAPH = {module: imports(module) for module in MODULES}


def test_every_module_has_a_floor():
    missing = [m for m in MODULES if floor(m) is None]
    names = [name for names in FLOORS.values() for name in names]
    assert FLOORS and all(FLOORS.values()), f"{ARCHITECTURE}: the floors' table did not read: {FLOORS}"
    assert len(names) == len(set(names)), f"{ARCHITECTURE}: a module on two floors: {names}"
    assert not missing, f"give these a floor in the table of {ARCHITECTURE.relative_to(REPO)}: {missing}"


def test_imports_go_only_downward():
    upward = [f"{MODULES[m].relative_to(REPO)}:{line}: {m} ({FLOOR_NAMES[floor(m)]}) imports {t} "
              f"({FLOOR_NAMES[floor(t)]})"
              for m, targets in GRAPH.items() for t, line in targets
              if floor(m) is not None and floor(t) is not None and floor(t) > floor(m)]
    assert not upward, "imports pointing up a floor (docs/ARCHITECTURE.md):\n" + "\n".join(upward)


def test_no_import_cycles():
    edges = {m: sorted({t for t, _ in targets if t in MODULES and t != m}) for m, targets in GRAPH.items()}
    state, stack, cycles = {}, [], []

    def visit(m):  # depth first; a module met again while on the stack closes a cycle
        state[m] = "open"
        stack.append(m)
        for t in edges[m]:
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in edges:
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_only_the_registry_and_lazy_packages_import_by_string():
    found = [f"{MODULES[m].relative_to(REPO)}:{node.lineno}" for m in MODULES if m not in STRING_IMPORTS
             for node in ast.walk(ast.parse(MODULES[m].read_text(encoding="utf-8")))
             if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(("import_module", "__import__"))]
    assert not found, f"an import by string hides an arrow from this test: {found}"


def test_the_schemas_ship_in_the_package():
    tomllib = pytest.importorskip("tomllib")
    from pipeline_lib.config import SCHEMA_PATH
    from pipeline_lib.registry import families, schema_path

    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["*"]
    for path in [SCHEMA_PATH, *map(schema_path, families())]:
        assert path.is_file() and path.resolve().is_relative_to(PACKAGE), path
        assert any(fnmatch.fnmatch(path.name, g) for g in globs), f"{path} is not package data in pyproject.toml"
