"""Which code and machine produced a run: the tags and params a cell's run starts with.

The machine: versions, backend, device and git commit (every parent run). The code: the
hash (tasks/source.py) of the code that generates the task's data and of the
code that builds the family's model, so that an edit to either is a new cell, never a resumed
or skipped one, and `harness verify` names the cells whose code changed since they ran.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

from harness.results import (
    BACKEND,
    BUDGET_KEY,
    CELL,
    CELL_KEY,
    CODE,
    CODE_ROOTS,
    DEVICE,
    DIRECTION,
    EVAL_LENGTHS,
    EXTRA_SEEDS,
    FAMILY,
    FRAMEWORK,
    GIT_COMMIT,
    KERAS,
    KERAS_TUNER,
    KIND,
    LENGTH,
    MAJORITY,
    METRIC,
    SCHEMA,
    SCHEMA_VERSION,
    SEED,
    TASK,
    VERDICT_RULE,
    VERSION,
    CellResult,
)

REPO = Path(__file__).resolve().parent.parent


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment_tags() -> dict[str, str]:
    """The machine, backend and code a run was made with (tags of every parent run)."""
    from harness import __version__, backend

    versions = backend.versions()
    tags = {
        VERSION: __version__,
        BACKEND: versions["backend"],
        KERAS: versions["keras"],
        KERAS_TUNER: versions["keras_tuner"],
        FRAMEWORK: versions["framework"],
        DEVICE: backend.device(),
    }
    commit = git_commit()
    if commit:
        tags[GIT_COMMIT] = commit
    return tags


def cell_code(task: str, family: str) -> str:
    """The hashes of a cell's code, as JSON: the task's (its data) and the family's (its
    model). Part of the cell's key, recorded on its run."""
    from search_spaces import family_class
    from tasks import get_task
    from tasks.source import source_hash

    space = family_class(family)
    hashes = {
        "task": source_hash(type(get_task(task))),
        "family": space.code or source_hash(space),  # your own family's: its class's
    }
    return json.dumps(hashes, sort_keys=True)


def code_changed(cell: CellResult) -> str:
    """Why a cell's stored numbers cannot be checked against today's code: its task's or
    family's code changed since its run, or (your own) cannot be imported; "" when neither."""
    from harness.errors import USER_ERRORS

    for root in json.loads(cell.params.get(CODE_ROOTS, "[]")):
        if root not in sys.path:
            sys.path.append(root)
    try:
        now = cell_code(cell.task, cell.family)
    except USER_ERRORS as error:
        return f"its own task or family cannot be loaded: {error}"
    stored, today = json.loads(cell.params[CODE]), json.loads(now)
    changed = [name for name in ("task", "family") if stored.get(name, today[name]) != today[name]]
    if changed:
        return (
            f"the code of its {' and '.join(changed)} changed since the run "
            f"(code {now}, run {cell.params[CODE]})"
        )
    return ""


def cell_tags(cell) -> dict[str, str]:
    """The tags a cell's parent run starts with: what it is, its schema, the machine."""
    return {
        KIND: CELL,
        CELL_KEY: cell.key,
        BUDGET_KEY: cell.budget_key,
        SCHEMA: SCHEMA_VERSION,
        VERDICT_RULE: MAJORITY,
        **environment_tags(),
    }


def cell_params(cell, task) -> dict[str, str]:
    """The params of a cell's parent run: what it is, its code and budget (JSON for lists)."""
    params = {
        TASK: cell.task,
        LENGTH: cell.length,
        FAMILY: cell.family,
        SEED: cell.seed,
        METRIC: task.metric.name,
        DIRECTION: task.metric.direction,
        EXTRA_SEEDS: list(cell.extra_seeds),
        EVAL_LENGTHS: list(cell.eval_lengths),
    }
    if cell.code is not None:
        params[CODE] = cell.code
    roots = plugin_roots(cell.task, cell.family)
    if roots:  # your own task or family: where verify imports it from
        params[CODE_ROOTS] = roots
    params.update(cell.budget.as_params())
    return {k: json.dumps(v) if isinstance(v, list | tuple) else v for k, v in params.items()}


def plugin_roots(*names: str) -> list[str]:
    """The folders to put on sys.path to import these tasks' or families' own modules again
    (verify runs from an empty folder): each module file's path less its package path."""
    from tasks.base import is_import_path

    roots = []
    for name in names:
        if not is_import_path(name):
            continue
        module = name.partition(":")[0]
        path = Path(inspect.getsourcefile(sys.modules[module])).resolve()
        roots.append(str(path.parents[len(module.split(".")) - 1]))
    return sorted(set(roots))
