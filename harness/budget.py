"""The budget: what every cell of a suite gets to spend, identical across families.

One typed definition on both sides of the store: a suite's cells are written with it
(harness/suites.py parses and checks a suite file's `[budget]` into it), and a stored run's
`budget.*` params are read back into it (`Budget.from_params`). Its settings (`settings`:
every field that is set) name it (`key`, with the seeds) and are logged as the run's params.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields

PREFIX = "budget."
"""The params of a cell or frontier run that hold its budget: `budget.epochs`, ..."""


@dataclass(frozen=True)
class Budget:
    """What every cell of a suite gets to spend, identical across families."""

    tuner: str = "random"
    max_trials: int = 3
    epochs: int = 5
    executions_per_trial: int = 1
    batch_size: int = 64
    n_train: int = 4096
    n_val: int = 1024
    n_test: int = 1024
    params: int | None = None
    """A parameter budget: each family's width is set so its model has this many."""
    fixed: tuple[tuple[str, object], ...] | None = None
    """Hyperparameters every family takes at one value, not searched ((name, value) pairs,
    sorted; `fixed = { depth = 2 }` in a suite), e.g. the depth a task needs."""
    grid: tuple[tuple[str, tuple], ...] | None = None
    """A grid search's axes ((name, values) pairs, sorted; `grid = { learning_rate = [...] }`),
    set whenever the tuner is "grid" (search_spaces.base.DEFAULT_GRID unless a suite names
    its own); every other hyperparameter is held at its family's default."""

    @property
    def fixed_values(self) -> dict | None:
        return dict(self.fixed) if self.fixed else None

    @property
    def grid_axes(self) -> dict | None:
        return {name: list(values) for name, values in self.grid} if self.grid else None

    def space_settings(self) -> dict:
        """What a family's space takes from the budget (search_spaces.get_space's keywords)."""
        return {"params": self.params, "fixed": self.fixed_values, "grid": self.grid_axes}

    # -- its name and its record --------------------------------------------------------------
    def settings(self) -> dict:
        """Every setting that is set (None: not part of the budget), as JSON holds it: the one
        rule by which a budget names cells and frontiers, so a setting added later keeps the
        keys of the budgets that do not use it."""
        return {name: value for name, value in asdict(self).items() if value is not None}

    def key(self, seed: int, extra_seeds: tuple[int, ...] | list[int]) -> str:
        """A short, stable name for the budget with its seeds: cells of one key share a table."""
        text = json.dumps(
            {"budget": self.settings(), "seed": seed, "extra": list(extra_seeds)}, sort_keys=True
        )
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    def as_params(self) -> dict[str, object]:
        """The run params that record it (`budget.epochs`, ...; lists as JSON by the caller)."""
        return {f"{PREFIX}{name}": value for name, value in self.settings().items()}

    @classmethod
    def from_params(cls, params: dict[str, str]) -> Budget:
        """The budget a run's params record (JSON values, as `as_params` logged them); a
        setting a run does not record takes its default, one this code does not know is left
        out."""
        known = {f.name for f in fields(cls)}
        values = {}
        for name, text in params.items():
            if not name.startswith(PREFIX) or name.removeprefix(PREFIX) not in known:
                continue
            values[name.removeprefix(PREFIX)] = _param_value(text)
        for name in ("fixed", "grid"):
            if values.get(name) is not None:
                values[name] = tuple((k, _tuple(v)) for k, v in values[name])
        return cls(**values)

    # -- in words ------------------------------------------------------------------------------
    @property
    def trials(self) -> int:
        """The trials its search runs (a grid's points, hyperband's brackets)."""
        return planned_trials(self.tuner, self.max_trials, self.epochs)

    @property
    def updates(self) -> int:
        """The optimizer updates one training run makes: epochs x batches per epoch."""
        return self.epochs * math.ceil(self.n_train / self.batch_size)

    def label(self, seeds: int, seed: int = 0) -> str:
        """The budget in words, for a table's header (the search seed named unless it is 0)."""
        trials = f"{self.trials} trial{'s' * (self.trials != 1)}"
        search = f"{self.tuner} search, {trials}"
        if self.tuner == "grid" and self.grid:
            axes = "; ".join(
                f"{name} {', '.join(map(hyper_value, values))}" for name, values in self.grid
            )
            search = (
                f"grid search over {axes} ({trials}, every other hyperparameter at its default)"
            )
        parts = [
            f"{search} x up to {self.epochs} epochs ({self.updates:,} updates)",
            f"batch {self.batch_size}",
            f"{self.n_train:,} / {self.n_val:,} / {self.n_test:,} "
            "train / validation / test sequences",
        ]
        if self.executions_per_trial != 1:
            parts.append(f"{self.executions_per_trial} executions per trial")
        if self.params:
            parts.insert(0, f"{self.params:,} parameters")
        if self.fixed:
            fixed = ", ".join(f"{name} {value}" for name, value in self.fixed)
            parts.insert(1 if self.params else 0, f"every family at {fixed}")
        split = " (two more on a split vote)" if seeds > 1 else ""
        parts.append(
            f"{seeds} seed{'s' * (seeds != 1)}{split}"
            + (f" from search seed {seed}" if seed else "")
        )
        return ", ".join(parts)


def hyper_value(value) -> str:
    """A hyperparameter's value as a table prints it: 0.001, 2, true."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def planned_trials(tuner: str, max_trials: int, epochs: int) -> int:
    """How many trials a search runs: `max_trials` (a grid's points), or for hyperband what its
    brackets hold (harness/kt_compat.py's `hyperband_trials`: one iteration, factor 3, as
    harness/tuning.py builds it)."""
    from harness import kt_compat

    if tuner != "hyperband":
        return max_trials
    return kt_compat.hyperband_trials(epochs)


def _param_value(text: str):
    """A param as it was logged: JSON (numbers, lists) where it parses, else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _tuple(value):
    """A JSON list back as the tuple a Budget holds (other values as they are)."""
    return tuple(value) if isinstance(value, list) else value
