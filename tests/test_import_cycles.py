"""No import cycles among tradelane's modules, counting imports inside functions too; layers point one way.

A cycle hidden behind an import inside a function ("late: X imports this module") still ties two
modules into one: neither can be read, tested or moved without the other. The graph is built from
the source with `ast`, so nothing is imported and the test sees every import, taken or not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "api", "cli", "deployments", "flows", "mailboxes", "tasks", "migrations", "tradelane")


def _modules(root: Path) -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(module: str, path: Path, tree: ast.Module) -> Iterator[str]:
    """The dotted names a module imports (`from a import b` yields `a.b`, which may be a module)."""
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node, at module level or inside functions, but not under `if TYPE_CHECKING:` (names
    for the type checker only, never imported at run time)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(node, ast.If) and _is_type_checking(node.test) and child in node.body:
            continue
        yield from _walk(child)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the tradelane modules it imports (a name that is not a module counts as its module)."""
    modules = _modules(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target in _imported(name, path, ast.parse(path.read_text(), str(path))):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            # A package's own __init__ is not an edge of interest: it is empty or a docstring here.
            if target and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as the path of modules that closes it, or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycles() -> None:
    graph = import_graph(ROOT)
    assert len(graph) > 100, "the walk found too few modules to mean anything"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


# DESIGN's layers: cli → api/mailboxes/deployments → flows → tasks → core; an import goes to a lower rank.
RANK = {
    "core": 0,
    "tasks": 1,
    # The public surface for template authors: flows register through tradelane.templates, and
    # tradelane.testing drives core; it names the built-in flows only as "module:attr" strings.
    "tradelane": 1,
    "flows": 2,
    "api": 3,
    "mailboxes": 3,
    "deployments": 3,
    "cli": 4,
    "migrations": 5,  # alembic's scripts, above the models they import
}
# core.db finds the migrations package to run it with alembic (it imports none of its modules).
ALLOWED = {("core.db", "migrations")}


def test_layers_point_one_way() -> None:
    upward = [
        f"{module} → {target}"
        for module, targets in sorted(import_graph(ROOT).items())
        for target in sorted(targets)
        if module.split(".")[0] != target.split(".")[0]
        and RANK[target.split(".")[0]] >= RANK[module.split(".")[0]]
        and (module, target) not in ALLOWED
    ]
    assert upward == [], "imports against the layers: " + "; ".join(upward)


def test_the_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The check itself: a cycle closed by an import inside a function is found."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "cli" / "main.py").write_text("from cli import extra\n")
    (tmp_path / "cli" / "extra.py").write_text("def late():\n    from cli.main import app\n")
    (tmp_path / "core" / "a.py").write_text("from . import b\n")
    (tmp_path / "core" / "b.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    import core.a\nelse:\n    import json\n"
    )
    graph = import_graph(tmp_path)
    assert graph["core.a"] == {"core.b"} and graph["core.b"] == set()
    assert find_cycle(graph) == ["cli.extra", "cli.main", "cli.extra"]
