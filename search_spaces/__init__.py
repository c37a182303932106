"""The model registry: a family name -> its search space class (no Keras imported here)."""

from search_spaces.attention import TransformerSpace
from search_spaces.base import FamilySpace, SpaceError
from search_spaces.recurrent import BiGRUSpace, BiLSTMSpace, GRUSpace, LSTMSpace, SimpleRNNSpace
from search_spaces.scan import LRUSpace, MinGRUSpace, MinLSTMSpace
from tasks.base import Task

REGISTRY: dict[str, type[FamilySpace]] = {
    space.family: space
    for space in (
        *(SimpleRNNSpace, LSTMSpace, GRUSpace, BiLSTMSpace, BiGRUSpace, TransformerSpace),
        *(MinGRUSpace, MinLSTMSpace, LRUSpace),
    )
}


def family_class(family: str) -> type[FamilySpace]:
    """The space class of `family`; a SpaceError naming the accepted ones otherwise."""
    if family not in REGISTRY:
        raise SpaceError(f"unknown family '{family}': accepted {', '.join(sorted(REGISTRY))}")
    return REGISTRY[family]


def get_space(family: str, task: Task, params: int | None = None) -> FamilySpace:
    """The search space of `family` built for `task`, its width set by `params` when given."""
    return family_class(family)(task, params)


def describe_space(family: str) -> dict:
    """A family's description and hyperparameters with their ranges (no model is built)."""
    from tasks import get_task

    space = get_space(family, get_task("adding"))
    return {
        "family": family,
        "description": space.description,
        "hyperparameters": [
            {
                "name": h.name,
                "range": h.describe()
                + (" (or set by --params)" if h.name == space.width_name else ""),
                "default": h.default,
            }
            for h in space.hyperparameters()
        ],
    }
