"""What code defines a class, as a hash: a task's (its data) and a family's (its model).

Tasks and families built in or your own are hashed alike; harness/provenance.py puts the
hashes in a cell's key and on its run, tasks/base.py's `Task.data_name` in the cached data's
file name.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from pathlib import Path


def source_hash(cls: type) -> str:
    """12 hex digits naming the code that defines `cls`'s behaviour: the syntax trees of its
    module and of the project modules it builds on (those it imports, at any depth, from
    tasks/, search_spaces/ or its own package; a package's `__init__`, a registry, is not
    followed). Docstrings, comments and formatting are not part of a syntax tree here, so
    only an edit that can change behaviour changes the hash; classes of one module share it."""
    module = cls.__module__
    roots = {"tasks", "search_spaces", module.partition(".")[0]}
    files, todo = {}, [(module, Path(inspect.getsourcefile(cls)).resolve())]
    while todo:
        name, path = todo.pop()
        if name in files:
            continue
        files[name] = path
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for imported in _syntax(path)[1]:
            found = _absolute(imported, package)
            if found is None or found.partition(".")[0] not in roots:
                continue
            where = _module_file(found)
            if where is not None and where.name != "__init__.py":
                todo.append((found, where))
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\n{_syntax(files[name])[0]}\n".encode())
    return digest.hexdigest()[:12]


def _syntax(path: Path) -> tuple[str, list[str]]:
    """A module's syntax tree with its string statements (docstrings) dropped, as text, and
    the names it imports."""
    return _read_syntax(path.read_text())


@functools.cache
def _read_syntax(source: str) -> tuple[str, list[str]]:
    import ast

    tree = ast.parse(source)
    imports = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):  # `from M import n`: M, and M.n (n may be a module)
            base = "." * node.level + (node.module or "")
            dot = "." if node.module else ""
            imports += [base, *(f"{base}{dot}{a.name}" for a in node.names)]
        body = getattr(node, "body", None)
        if isinstance(body, list):
            node.body = [s for s in body if not _is_string(s)]
    return ast.dump(tree), imports


def _is_string(statement) -> bool:
    import ast

    value = getattr(statement, "value", None) if isinstance(statement, ast.Expr) else None
    return isinstance(value, ast.Constant) and isinstance(value.value, str)


def _absolute(name: str, package: str) -> str | None:
    """An imported module's absolute name (a relative one resolved in `package`)."""
    import importlib.util

    if not name.startswith("."):
        return name
    try:
        return importlib.util.resolve_name(name, package)
    except (ImportError, ValueError):
        return None


def _module_file(name: str) -> Path | None:
    """The source file of module `name`, found without importing it; None without one."""
    import importlib.util

    top, *parts = name.split(".")
    try:
        spec = importlib.util.find_spec(top)  # the packages followed are imported already
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    path, folders = Path(spec.origin), list(spec.submodule_search_locations or [])
    for part in parts:
        found = [Path(f) / part / "__init__.py" for f in folders]
        found += [Path(f) / f"{part}.py" for f in folders]
        path = next((f for f in found if f.is_file()), None)
        if path is None:
            return None
        folders = [str(path.parent)] if path.name == "__init__.py" else []
    return path.resolve()
