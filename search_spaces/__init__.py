"""The model registry: a family name -> its search space class (no Keras imported here), or
your own family by import path."""

import functools
import numbers

from search_spaces.attention import TransformerSpace
from search_spaces.base import FamilySpace, Hyper, SpaceError, contract_error
from search_spaces.recurrent import BiGRUSpace, BiLSTMSpace, GRUSpace, LSTMSpace, SimpleRNNSpace
from search_spaces.scan import (
    LRUSpace,
    MinGRUSpace,
    MinLSTMSpace,
    RotScanSpace,
    SignedMinGRUSpace,
)
from tasks.base import Task, is_import_path, load_class, plugin_call
from tasks.source import source_hash

REGISTRY: dict[str, type[FamilySpace]] = {
    space.family: space
    for space in (
        *(SimpleRNNSpace, LSTMSpace, GRUSpace, BiLSTMSpace, BiGRUSpace, TransformerSpace),
        *(MinGRUSpace, MinLSTMSpace, LRUSpace, SignedMinGRUSpace, RotScanSpace),
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
    """Your own family, imported and checked against the contract (`check_family`)."""
    from tasks import get_task

    try:
        cls = load_class(path, FamilySpace)
        check_family(cls, get_task("adding"))
    except ValueError as error:
        raise contract_error(path, error) from None
    return type(cls.__name__, (cls,), {"family": path, "code": source_hash(cls)})


def check_family(cls: type[FamilySpace], task: Task) -> None:
    """A ValueError naming the first thing `cls` breaks: it defines `backbone` and
    `backbone_parameters`, declares its hyperparameters, and its parameter formula answers for
    its defaults at a width of 8 on `task` (the backbone is built only in a trial: building it
    here would take device memory in the process that serves the workers)."""
    for method in ("backbone", "backbone_parameters"):
        if getattr(cls, method) is getattr(FamilySpace, method):
            raise ValueError(f"it does not define {method}")
    own = getattr(cls, "hyperparameters_own", None)
    if not (isinstance(own, tuple) and all(isinstance(h, Hyper) for h in own)):
        raise ValueError(f"hyperparameters_own must be a tuple of Hyper (got {own!r})")
    space = plugin_call(f"{cls.__name__}(task)", cls, task)
    values = {**plugin_call("defaults()", space.defaults), space.width_name: 8}
    counted = plugin_call("backbone_parameters(defaults, 8)", space.backbone_parameters, values, 8)
    if not (
        isinstance(counted, tuple)
        and len(counted) == 2
        and all(isinstance(n, numbers.Integral) and n > 0 for n in counted)
    ):
        raise ValueError(
            f"backbone_parameters must return (parameters, output width), two positive ints "
            f"(got {counted!r})"
        )


def get_space(
    family: str,
    task: Task,
    params: int | None = None,
    fixed: dict | None = None,
    grid: dict | None = None,
) -> FamilySpace:
    """The search space of `family` built for `task`, its width set by `params` when given,
    the hyperparameters `fixed` names held at their values; with a `grid` (name -> values),
    every other hyperparameter held at its default."""
    space_class = family_class(family)
    if grid is not None:
        return space_class(task, params, fixed, grid)
    return space_class(task, params, fixed) if fixed else space_class(task, params)


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
                "source": h.source,
            }
            for h in space.hyperparameters()
        ],
    }
