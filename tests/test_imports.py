"""The project's modules import each other without a circle, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "tasks", "search_spaces")


def module_files() -> dict[str, Path]:
    """Every module of the project's packages by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that module `name` imports anywhere in its file, with the packages
    that importing them runs first (those that do not hold `name` itself)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in modules else base)
    with_packages = set(targets)
    for target in targets:
        parts = target.split(".")
        with_packages.update(".".join(parts[:end]) for end in range(1, len(parts)))
    own = {".".join(name.split(".")[:end]) for end in range(1, name.count(".") + 2)}
    return {t for t in with_packages if t in modules and t not in own}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_imports_inside_functions_and_relative_ones(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg import b\n")
    (package / "b.py").write_text("from .a import f\n")
    (package / "sub").mkdir()
    (package / "sub" / "__init__.py").write_text("from pkg.sub import c\n")
    (package / "sub" / "c.py").write_text("from pkg import a\n")
    (package / "d.py").write_text("import pkg.sub.c\n")
    modules = {
        "pkg": package / "__init__.py",
        "pkg.a": package / "a.py",
        "pkg.b": package / "b.py",
        "pkg.sub": package / "sub" / "__init__.py",
        "pkg.sub.c": package / "sub" / "c.py",
        "pkg.d": package / "d.py",
    }
    graph = {name: imported(name, path, modules) for name, path in modules.items()}
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.a"},
        "pkg.sub": {"pkg.sub.c"},  # a package's own modules do not import it back
        "pkg.sub.c": {"pkg.a"},
        "pkg.d": {"pkg.sub", "pkg.sub.c"},  # importing pkg.sub.c runs pkg/sub/__init__ first
    }
    assert circles(graph) == [["pkg.a", "pkg.b"]]


def test_no_import_circle_in_the_project():
    graph = import_graph()
    assert "harness.runner" in graph and graph["harness.runner"], "the walk found no imports"
    assert circles(graph) == [], "modules that import each other in a loop"
