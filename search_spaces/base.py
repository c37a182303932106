"""What every family shares: its hyperparameters declared once, the width a parameter
budget sets, and the model (encoder -> backbone -> head), compiled.

A family is a `FamilySpace` subclass: its searched hyperparameters as data
(`Hyper`), its backbone built from their values with `keras.layers`, and the
backbone's trainable parameter count as a formula. The hyperparameters are data so
that `harness spaces` lists them without importing Keras, and Keras Tuner declares
the same ones (harness/tuning.py adapts a space to a `keras_tuner.HyperModel`).

With a parameter budget N the width is not searched: for each trial's values the
family takes the width whose model has the parameter count nearest N, within
BUDGET_TOLERANCE (width is the only knob). A depth that cannot meet N on the task
is left out of the cell's space; when no depth can, `BudgetError` names the
smallest budget that works. Nothing here imports Keras until a model is built.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from tasks.base import Task, plugin_call

CLIP_NORM = 1.0
BUDGET_TOLERANCE = 0.10
MAX_WIDTH = 1 << 14


class SpaceError(ValueError):
    """Bad input to a search space: an unknown family (the CLI's exit code 2)."""


class BudgetError(SpaceError):
    """A parameter budget a family cannot meet on a task."""


def contract_error(family: str, problem: object) -> SpaceError:
    """The one line saying how your own family breaks the family contract."""
    return SpaceError(f"family '{family}' breaks the family contract: {problem}")


@dataclass(frozen=True)
class Hyper:
    """One searched hyperparameter: a choice, an integer or float range, or a boolean.

    Its default is the value a grid search trains at (unless the grid varies it) and
    `source` says where that value comes from (`harness spaces` shows both)."""

    name: str
    kind: str  # "choice", "int", "float", "boolean"
    default: Any
    values: tuple = ()
    low: float = 0
    high: float = 0
    step: float | None = None
    log: bool = False
    source: str = ""

    def declare(self, hp) -> Any:
        """Declare it on a keras_tuner.HyperParameters and return the trial's value."""
        if self.kind == "choice":
            return hp.Choice(self.name, list(self.values), default=self.default)
        if self.kind == "int":
            return hp.Int(self.name, int(self.low), int(self.high), default=self.default)
        if self.kind == "float":
            sampling = "log" if self.log else "linear"
            return hp.Float(
                self.name, self.low, self.high, step=self.step, sampling=sampling,
                default=self.default,
            )  # fmt: skip
        return hp.Boolean(self.name, default=self.default)

    def options(self) -> tuple:
        """Every value of a choice, integer range or boolean (not of a float range)."""
        if self.kind == "choice":
            return self.values
        if self.kind == "int":
            return tuple(range(int(self.low), int(self.high) + 1))
        if self.kind == "boolean":
            return (False, True)
        raise ValueError(f"{self.name} is a float range")

    def describe(self) -> str:
        if self.kind == "choice":
            return ", ".join(map(str, self.values))
        if self.kind == "boolean":
            return "true, false"
        text = f"{self.low:g} .. {self.high:g}"
        if self.step:
            text += f" (step {self.step:g})"
        return text + (" (log)" if self.log else "")

    def allows(self, value) -> bool:
        """Whether `value` lies in its range (of its type: a boolean only for a boolean)."""
        if isinstance(value, bool) != (self.kind == "boolean"):
            return False
        if self.kind == "float":
            return isinstance(value, int | float) and self.low <= value <= self.high
        return value in self.options()


def choice(name: str, values, default, source: str = "") -> Hyper:
    return Hyper(name, "choice", default, values=tuple(values), source=source)


def integer(name: str, low: int, high: int, default: int, source: str = "") -> Hyper:
    return Hyper(name, "int", default, low=low, high=high, source=source)


def real(
    name: str, low: float, high: float, default: float, step=None, log=False, source: str = ""
) -> Hyper:
    return Hyper(name, "float", default, low=low, high=high, step=step, log=log, source=source)


def boolean(name: str, default: bool, source: str = "") -> Hyper:
    return Hyper(name, "boolean", default, source=source)


OPTIMIZER = (
    real(
        "learning_rate", 3e-4, 1e-2, default=3e-3, log=True,
        source="the middle of the grid's default learning rates {1e-3, 3e-3, 1e-2}",
    ),
    boolean(
        "clip_gradients", default=True,
        source="gradient norm clipped at 1.0, the remedy for exploding gradients in "
        "recurrences (Pascanu et al. 2013)",
    ),
)  # fmt: skip
"""Adam with a log-scaled learning rate and optional gradient-norm clipping: every family."""

DEFAULT_GRID = (("learning_rate", (1e-3, 3e-3, 1e-2)),)
"""A grid search's axes unless a suite names its own: the learning rate, as MAD and Zoology
sweep it (Keras's Adam default 1e-3, and 3x and 10x it)."""


def dense_parameters(inputs: int, outputs: int, bias: bool = True) -> int:
    return inputs * outputs + (outputs if bias else 0)


class FamilySpace:
    """A model family's search space for one task (and, optionally, a parameter budget).

    Subclasses set `family`, `description`, `hyperparameters_own` and implement
    `backbone` (Keras) and `backbone_parameters` (the same count as a formula).
    """

    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    code: ClassVar[str | None] = None
    """A plug-in's code hash (tasks/source.py's `source_hash` of the class it was imported as,
    set by search_spaces.plugin): it marks your own family; None built in."""
    width_name: ClassVar[str] = "units"
    widths: ClassVar[tuple[int, ...]] = (32, 64, 128)
    width_default: ClassVar[int] = 64
    hyperparameters_own: ClassVar[tuple[Hyper, ...]] = ()
    structural: ClassVar[tuple[str, ...]] = ("depth",)
    """The hyperparameters besides width that change the parameter count."""

    def __init__(
        self,
        task: Task,
        params: int | None = None,
        fixed: dict | None = None,
        grid: dict | None = None,
    ):
        """`fixed`: hyperparameters held at one value each. `grid`: a grid search's axes
        (name -> values); every other hyperparameter is then held at its default."""
        self.task, self.params = task, params
        self._width = choice(
            self.width_name, self.widths, default=self.width_default,
            source="the middle of the widths searched without a parameter budget",
        )  # fmt: skip
        allowed = {name: (value,) for name, value in (fixed or {}).items()}
        if grid is not None:
            defaults = {h.name: (h.default,) for h in (*self.hyperparameters_own, *OPTIMIZER)}
            allowed = {**defaults, **allowed, **{k: tuple(v) for k, v in grid.items()}}
        if grid is not None and params is None:
            allowed = {self.width_name: (self.width_default,), **allowed}
        if allowed:  # searched no more, or over the grid's values: for this space alone
            self.hyperparameters_own = self._restricted(self.hyperparameters_own, allowed)
            self._optimizer = self._restricted(OPTIMIZER, allowed)
            self._width = self._restricted((self._width,), allowed)[0]
            searched = (*self.hyperparameters_own, *OPTIMIZER)
            width = {self.width_name} if params is None else set()
            unknown = set(allowed) - {h.name for h in searched} - width
            if unknown:
                names = ", ".join(h.name for h in (*self.hyperparameters_own, *OPTIMIZER))
                raise SpaceError(
                    f"family '{self.family}' has no hyperparameter '{sorted(unknown)[0]}' to "
                    f"fix or grid: it searches {names}"
                )
        self._own = self.hyperparameters_own
        if params is not None:
            self._own = self._within_budget(params)

    _optimizer: tuple[Hyper, ...] = OPTIMIZER

    def _restricted(self, hypers: tuple[Hyper, ...], allowed: dict) -> tuple[Hyper, ...]:
        """`hypers` with each one `allowed` names narrowed to a choice of its values, each
        checked in range; its default the first (a one-value choice is a fixed value)."""
        narrowed = []
        for h in hypers:
            if h.name not in allowed:
                narrowed.append(h)
                continue
            for value in allowed[h.name]:
                if not h.allows(value):
                    raise SpaceError(
                        f"family '{self.family}': {h.name} = {value!r} is outside its range "
                        f"{h.describe()}"
                    )
            values = allowed[h.name]
            narrowed.append(choice(h.name, values, values[0], h.source))
        return tuple(narrowed)

    # -- the space -----------------------------------------------------------------
    def hyperparameters(self) -> tuple[Hyper, ...]:
        """What Keras Tuner searches: the width (unless a budget sets it), the family's own,
        the optimizer's."""
        width = () if self.params is not None else (self._width,)
        return (*width, *self._own, *self._optimizer)

    def declare(self, hp) -> dict[str, Any]:
        """Declare the hyperparameters on `hp`; the trial's values, the derived width added."""
        values = {h.name: h.declare(hp) for h in self.hyperparameters()}
        return self.complete(values)

    def defaults(self) -> dict[str, Any]:
        """Every hyperparameter at its default (the width derived from a budget)."""
        return self.complete({h.name: h.default for h in self.hyperparameters()})

    def complete(self, values: dict[str, Any]) -> dict[str, Any]:
        """`values` with the width a budget sets (values without a budget are complete)."""
        if self.params is None:
            return values
        return {**values, self.width_name: self.width_for(values)}

    def derived(self) -> tuple[str, ...]:
        """Names of values derived rather than searched (the width, under a budget)."""
        return () if self.params is None else (self.width_name,)

    # -- parameters ----------------------------------------------------------------
    def backbone_parameters(self, values: dict[str, Any], width: int) -> tuple[int, int]:
        """(trainable parameters of the backbone, its output width) for inputs of `width`."""
        raise NotImplementedError

    def parameters(self, values: dict[str, Any]) -> int:
        """Trainable parameters of the whole model for `values` (width included)."""
        width = values[self.width_name]
        task = self.task
        if task.input.kind == "tokens":
            encoder = task.input.vocab_size * width
        else:
            encoder = dense_parameters(task.input.width, width)
        backbone, features = self.backbone_parameters(values, width)
        outputs = 1 if task.output.kind == "regression" else task.output.classes
        return encoder + backbone + dense_parameters(features, outputs)

    def width_for(self, values: dict[str, Any], params: int | None = None) -> int:
        """The width whose model has the parameter count nearest the budget (or `params`)."""
        params = self.params if params is None else params
        count = lambda width: self.parameters({**values, self.width_name: width})  # noqa: E731
        low, high = 1, MAX_WIDTH
        while low < high:  # the smallest width reaching the budget
            middle = (low + high) // 2
            if count(middle) < params:
                low = middle + 1
            else:
                high = middle
        return min((max(1, low - 1), low), key=lambda width: abs(count(width) - params))

    def _meets(self, own: tuple[Hyper, ...], params: int) -> bool:
        """Whether every combination of the structural hyperparameters in `own` meets `params`."""
        structural = [h for h in own if h.name in self.structural]
        base = {h.name: h.default for h in (*own, *OPTIMIZER)}
        for combo in itertools.product(*(h.options() for h in structural)):
            values = {**base, **dict(zip((h.name for h in structural), combo, strict=True))}
            width = self.width_for(values, params)
            got = self.parameters({**values, self.width_name: width})
            if abs(got - params) > BUDGET_TOLERANCE * params:
                return False
        return True

    def _depths(self) -> list[tuple[Any, tuple[Hyper, ...]]]:
        """(depth, the family's hyperparameters with depth fixed to it) for each depth."""
        depth = next((h for h in self.hyperparameters_own if h.name == "depth"), None)
        if depth is None:
            return [(None, self.hyperparameters_own)]
        fixed = lambda value: tuple(  # noqa: E731
            choice("depth", (value,), value) if h.name == "depth" else h
            for h in self.hyperparameters_own
        )
        return [(value, fixed(value)) for value in depth.options()]

    def _within_budget(self, params: int) -> tuple[Hyper, ...]:
        """The family's hyperparameters with each depth that cannot meet `params` left out."""
        depths = self._depths()
        kept = [value for value, own in depths if self._meets(own, params)]
        if not kept:
            smallest = self.smallest_budget()
            where = f"family '{self.family}' cannot meet a budget of {params:,} parameters"
            if params < smallest:
                raise BudgetError(
                    f"{where} on task '{self.task.name}': the smallest it can meet is "
                    f"{smallest:,} (within {BUDGET_TOLERANCE:.0%})"
                )
            values = {h.name: h.default for h in (*depths[0][1], *OPTIMIZER)}
            count = lambda w: self.parameters({**values, self.width_name: w})  # noqa: E731
            width = self.width_for(values, params)
            width -= count(width) >= params  # the widths just below and above the budget
            near = (count(width), count(width + 1))
            raise BudgetError(
                f"{where} on task '{self.task.name}' within {BUDGET_TOLERANCE:.0%}: its widths "
                f"jump over it (nearest {near[0]:,} and {near[1]:,}); the smallest it can meet "
                f"is {smallest:,}, and larger budgets are met more closely"
            )
        if len(kept) == len(depths):
            return self.hyperparameters_own
        narrowed = choice("depth", kept, kept[0])
        return tuple(narrowed if h.name == "depth" else h for h in self.hyperparameters_own)

    def smallest_budget(self) -> int:
        """The smallest budget that some depth meets, whatever the other hyperparameters."""
        best = math.inf
        for _, own in self._depths():
            narrowest = {h.name: h.default for h in (*own, *OPTIMIZER)}
            budget = math.ceil(
                self.parameters({**narrowest, self.width_name: 1}) / (1 + BUDGET_TOLERANCE)
            )
            while not self._meets(own, budget):  # coarse widths at tiny sizes: step up
                budget += max(1, budget // 100)
            best = min(best, budget)
        return int(best)

    # -- the model -----------------------------------------------------------------
    def backbone(self, values: dict[str, Any], x, per_step: bool):
        """Map encoded inputs (batch, T, width) to (batch, T, d) if `per_step` else (batch, d)."""
        raise NotImplementedError

    def build(self, hp):
        """The compiled model of a Keras Tuner trial (declares the hyperparameters on `hp`)."""
        return self.model(self.declare(hp))

    def default_model(self):
        """The compiled model at the default hyperparameters."""
        return self.model(self.defaults())

    def model(self, values: dict[str, Any]):
        """The compiled Keras model for complete `values`."""
        import keras

        from search_spaces.io import attach_head, encode_input, loss_and_metrics, model_input

        inputs = model_input(self.task)
        x = encode_input(self.task, inputs, values[self.width_name])
        features = self._backbone(values, x, self.task.output.kind == "per_step_classification")
        model = keras.Model(inputs, attach_head(self.task, features), name=self.family)
        loss, metrics = loss_and_metrics(self.task)
        clip = CLIP_NORM if values["clip_gradients"] else None
        optimizer = keras.optimizers.Adam(values["learning_rate"], clipnorm=clip)
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
        return model

    def _backbone(self, values: dict[str, Any], x, per_step: bool):
        """The backbone's features; what your own family's backbone breaks, as a SpaceError."""
        if self.code is None:
            return self.backbone(values, x, per_step)
        try:
            features = plugin_call(
                f"backbone(per_step={per_step})", self.backbone, values, x, per_step
            )
        except ValueError as error:
            raise contract_error(self.family, error) from None
        shape = getattr(features, "shape", None)
        if shape is None or len(shape) != (3 if per_step else 2):
            wanted = "(batch, steps, d)" if per_step else "(batch, d)"
            raise contract_error(
                self.family, f"backbone(per_step={per_step}) must return {wanted} (got {shape})"
            )
        return features
