"""The project's modules import each other without a circle, imports inside functions included."""

from __future__ import annotations

from tests.helpers import import_graph, imported


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
