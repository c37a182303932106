"""The task registry: one module per task, one line per task here (or your own, by import path)."""

import functools
import numbers

import numpy as np

from tasks.adding import Adding
from tasks.assoc_recall import AssocRecall
from tasks.base import (
    IGNORE,
    InputSpec,
    Metric,
    OutputSpec,
    Task,
    TaskError,
    is_import_path,
    load_class,
    plugin_call,
)
from tasks.copy_memory import CopyMemory
from tasks.counting import Counting
from tasks.digits import Digits, PermutedDigits
from tasks.first_token import FirstToken
from tasks.listops import ListOps
from tasks.mqar import MQAR, PAIRS
from tasks.parity import Parity

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
        Parity(),
        *(MQAR(pairs) for pairs in PAIRS),
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
    """Your own task, imported and checked against the contract (`check_task`). It is named by
    its import path; its data is filed under the path and the hash of its code, never
    mixed with a built-in's or an older version's."""
    try:
        cls = load_class(path, Task)
        task = plugin_call(f"{cls.__name__}()", cls)
        check_task(task)
    except ValueError as error:
        raise TaskError(f"task '{path}' breaks the task contract: {error}") from None
    task.name = path
    return task


DECLARED = {
    "description": str,
    "input": InputSpec,
    "output": OutputSpec,
    "loss": str,
    "metric": Metric,
    "default_lengths": tuple,
}
"""The class attributes every task sets, and their types."""


def check_task(task: Task) -> None:
    """A ValueError naming the first thing `task` breaks: its class attributes, and a sample of 2
    examples at its shortest length against its input and output specs (shapes, dtypes, token
    ids, classes), scored by its own `scores` of its trivial prediction."""
    for name, kind in DECLARED.items():
        value = getattr(task, name, None)
        if not isinstance(value, kind):
            found = "it is missing" if value is None else f"got {value!r}"
            raise ValueError(f"class attribute '{name}' must be a {kind.__name__} ({found})")
    loss = "mse" if task.output.kind == "regression" else "sparse_categorical_crossentropy"
    if task.loss != loss:
        raise ValueError(f"loss '{task.loss}' for {task.output.kind}: accepted '{loss}'")
    length = task.accepted_length(task.min_length, True)
    if length is None:
        raise ValueError(f"it accepts no length ({task.min_length}..{task.max_length})")
    steps = plugin_call(f"sequence_steps({length})", task.sequence_steps, length)
    sample = plugin_call(f"generate(2, {length}, 0, 'train')", task.generate, 2, length, 0, "train")
    if not (isinstance(sample, tuple) and len(sample) == 2):
        raise ValueError(f"generate must return a pair (x, y) (got {type(sample).__name__})")
    x, y = sample
    if task.input.kind == "tokens":
        check_array("x", x, (2, steps), "int32", task.input.vocab_size)
    else:
        check_array("x", x, (2, steps, task.input.width), "float32")
    if task.output.kind == "regression":
        check_array("y", y, (2,), "float32")
    else:
        per_step = task.output.kind == "per_step_classification"
        check_array("y", y, (2, steps) if per_step else (2,), "int32", task.output.classes)
    prediction = plugin_call("trivial_prediction", task.trivial_prediction, x, length)
    scores = plugin_call("scores", task.scores, y, prediction)
    if not (isinstance(scores, dict) and task.metric.name in scores):
        raise ValueError(f"scores must return a dict holding the metric '{task.metric.name}'")
    for name in ("baseline", "solved_bar"):
        value = plugin_call(f"{name}({length})", getattr(task, name), length)
        if not isinstance(value, numbers.Real):
            raise ValueError(f"{name}({length}) must return a number (got {value!r})")


def check_array(name: str, array, shape: tuple, dtype: str, ids: int | None = None) -> None:
    """A ValueError unless `array` is a numpy array of `shape` and `dtype` whose values, when
    `ids` is given, are ids below it (or IGNORE)."""
    if not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype:
        ok = isinstance(array, np.ndarray)
        found = f"{array.dtype} of shape {array.shape}" if ok else type(array).__name__
        raise ValueError(f"generate must return {name} as {dtype} of shape {shape} (got {found})")
    if ids is not None and not np.all(((array >= 0) & (array < ids)) | (array == IGNORE)):
        raise ValueError(f"generate's {name} holds ids outside 0..{ids - 1}")
