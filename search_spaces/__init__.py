"""The model registry: a family name -> its search space class (no Keras imported here), or
your own family by import path."""

import functools

from search_spaces.attention import TransformerSpace
from search_spaces.base import FamilySpace, SpaceError
from search_spaces.recurrent import BiGRUSpace, BiLSTMSpace, GRUSpace, LSTMSpace, SimpleRNNSpace
from search_spaces.scan import LRUSpace, MinGRUSpace, MinLSTMSpace
from tasks.base import Task, is_import_path, load_class, source_hash

REGISTRY: dict[str, type[FamilySpace]] = {
    space.family: space
    for space in (
        *(SimpleRNNSpace, LSTMSpace, GRUSpace, BiLSTMSpace, BiGRUSpace, TransformerSpace),
        *(MinGRUSpace, MinLSTMSpace, LRUSpace),
    )
}


def family_class(family: str) -> type[FamilySpace]:
    """The space class of `family`, or the FamilySpace subclass at an import path
    (`package.module:ClassName`); a SpaceError naming what is wrong otherwise."""
    if is_import_path(family):
        return plugin(family)
    if family not in REGISTRY:
        raise SpaceError(f"unknown family '{family}': accepted {', '.join(sorted(REGISTRY))}")
    return REGISTRY[family]


@functools.cache
def plugin(path: str) -> type[FamilySpace]:
    """Your own family, imported and checked: it declares hyperparameters and its parameter
    formula answers for its defaults (a width of 8) on the adding task."""
    from tasks import get_task

    try:
        cls = load_class(path, FamilySpace)
        space = cls(get_task("adding"))
        values = {**space.defaults(), space.width_name: 8}
        space.parameters(values)
    except (ValueError, TypeError, KeyError, NotImplementedError) as error:
        raise SpaceError(f"family '{path}' breaks the family contract: {error!r}") from None
    return type(cls.__name__, (cls,), {"family": path, "code": source_hash(cls)})


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
