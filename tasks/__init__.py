"""The task registry: one module per task, one line per task here."""

from tasks.adding import Adding
from tasks.assoc_recall import AssocRecall
from tasks.base import Task, TaskError
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
    """The registered task called `name`; a TaskError naming the accepted ones otherwise."""
    if name not in REGISTRY:
        raise TaskError(f"unknown task '{name}': accepted {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]
