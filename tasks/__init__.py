"""The task registry: one module per task, one line per task here (or your own, by import path)."""

import functools

from tasks.adding import Adding
from tasks.assoc_recall import AssocRecall
from tasks.base import Task, TaskError, is_import_path, load_class, source_hash
from tasks.copy_memory import CopyMemory
from tasks.counting import Counting
from tasks.digits import Digits, PermutedDigits
from tasks.first_token import FirstToken
from tasks.listops import ListOps

REGISTRY: dict[str, Task] = {
    task.name: task
    for task in (
        Adding(),
        Counting(),
        CopyMemory(),
        FirstToken(),
        ListOps(),
        AssocRecall(),
        Digits(),
        PermutedDigits(),
    )
}


def get_task(name: str) -> Task:
    """The registered task called `name`, or the Task subclass at an import path
    (`package.module:ClassName`); a TaskError naming what is wrong otherwise."""
    if is_import_path(name):
        return plugin(name)
    if name not in REGISTRY:
        raise TaskError(f"unknown task '{name}': accepted {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


@functools.cache
def plugin(path: str) -> Task:
    """Your own task, imported and checked: it must generate a small sample as the contract
    says. It is named by its import path; its data is filed under the path and the hash of
    its source file, never mixed with a built-in's or an older version's."""
    try:
        cls = load_class(path, Task)
        task = cls()
        x, y = task.generate(2, task.accepted_length(task.min_length, True), 0, "train")
    except (ValueError, TypeError, NotImplementedError) as error:
        raise TaskError(f"task '{path}' breaks the task contract: {error}") from None
    kinds = [getattr(a, "dtype", None) for a in (x, y)]
    if any(k is None or k.kind not in "fi" for k in kinds) or len(x) != 2 or len(y) != 2:
        raise TaskError(
            f"task '{path}' breaks the task contract: generate(n=2, ...) must return (x, y), "
            f"numpy arrays of 2 examples, float32 or int32 (got {type(x).__name__}, "
            f"{type(y).__name__})"
        )
    task.name = path
    task.code = source_hash(cls)
    return task
