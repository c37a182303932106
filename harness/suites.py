"""Suites: TOML files naming tasks x lengths x families under one budget, read into dataclasses.

A suite file looks like:

    name = "quick"
    description = "..."
    [budget]                 # every key optional; defaults below
    tuner = "grid"           # random | bayesian | hyperband | grid
    grid = { learning_rate = [0.001, 0.003, 0.01] }   # grid only (this is its default);
                             # every other hyperparameter at its family's default
    max_trials = 3           # random, bayesian: trials (a grid's are its points)
    epochs = 6
    fixed = { depth = 2 }    # optional: hyperparameters every family takes at one value
    [seeds]
    search = 0               # data, tuner and initialisation seed of the search
    extra = [1, 2]           # retrain the best configuration with these seeds (an odd
                             # number of seeds in all; a split vote adds two more)
    [[cells]]                # a block: every task x length x family in it is one cell
    tasks = ["adding"]
    lengths = [50, 100]
    families = ["lstm", "gru"]
    eval_lengths = [200]     # optional: also test the best model at these longer lengths
    budget = { epochs = 8 }  # optional: overrides the suite's budget for this block
    [[frontier]]             # a block: every task x family in it is one frontier search
    tasks = ["adding"]
    families = ["lstm", "gru"]
    min_length = 25          # optional, defaults below (FrontierSpec)
    max_length = 400
    resolution = 0.25        # stop when longest solved x (1 + resolution) >= shortest failed
    seeds = 3                # seeds per probed cell (odd): the search's and seeds - 1 retrains
    budget = { params = 10000 }
    part = "memory"          # optional, any block: `harness run --part memory` runs its part

A suite needs at least one [[cells]] or [[frontier]] block; `params` in a budget sets
each family's width from a parameter budget (search_spaces/base.py).

The dataclasses a suite reads into (Budget, Cell, FrontierSpec) and the parser that
checks every key stay in this one module on purpose: a suite file's keys, their
defaults and their errors are read in one place.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from harness.budget import Budget
from harness.errors import USER_ERRORS, UserError, unknown
from harness.frontier import Ask
from harness.provenance import cell_code
from harness.results import (
    BUDGET_KEY,
    CODE,
    FAMILY,
    FRONTIER,
    FRONTIER_KEY,
    KIND,
    MAX_LENGTH,
    MIN_LENGTH,
    RESOLUTION,
    SEED,
    SEEDS,
    TASK,
    cell_label,
)

SUITES_DIR = Path(__file__).resolve().parent.parent / "suites"
TUNERS = ("random", "bayesian", "hyperband", "grid")
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class Cell:
    """One search: a task at a length with a family, a budget and seeds."""

    task: str
    length: int
    family: str
    budget: Budget
    seed: int = 0
    extra_seeds: tuple[int, ...] = ()
    eval_lengths: tuple[int, ...] = ()
    code: str | None = None
    """The hashes of its task's and family's code (provenance.cell_code): an edit is a new
    cell. Every cell of a suite has them."""

    @property
    def key(self) -> str:
        """Stable identity: names the tuner folder and tags the MLflow parent run."""
        return f"{self.task}-L{self.length}-{self.family}-{digest(self.as_dict())}"

    @property
    def budget_key(self) -> str:
        """The budget's name: cells of one budget key share a table."""
        return self.budget.key(self.seed, self.extra_seeds)

    @property
    def label(self) -> str:
        return cell_label(self.task, self.length, self.family)

    def as_dict(self) -> dict:
        """What the cell is, by the one rule of keys (`digest`): every setting that is set."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return settings({**values, "budget": self.budget.settings()})

    @property
    def oracle_seed(self) -> int:
        """The seed of the cell's Keras Tuner oracle: a stable hash of the search seed and the
        cell (task, length, family, budget), in 1..MAX_SEED, so two cells draw different
        configurations and a search seed of 0 is a seed like any other (Keras Tuner takes a
        seed of 0 for none). The data and the models' initialisation keep the search seed."""
        values = self.as_dict()
        text = json.dumps(
            {name: values[name] for name in ("seed", "task", "length", "family", "budget")},
            sort_keys=True,
        )
        return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) % MAX_SEED + 1


def settings(values: dict) -> dict:
    """The settings that are set (not None): the one rule of a cell's and a frontier's key, so
    a setting added later keeps the keys of those that do not use it (old stores resume)."""
    return {name: value for name, value in values.items() if value is not None}


def digest(values: dict) -> str:
    """The short stable hash of a cell's or frontier's settings (lists and tuples alike)."""
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class FrontierSpec:
    """One frontier to find: a task and family under a budget, with k seeds per cell."""

    task: str
    family: str
    budget: Budget
    seed: int = 0
    seeds: int = 1
    min_length: int = 25
    max_length: int = 3200
    resolution: float = 0.25
    code: str | None = None

    @property
    def key(self) -> str:
        """Stable identity: tags the frontier's run (the rule of `Cell.key`)."""
        spec = {f.name: getattr(self, f.name) for f in fields(self)}
        values = settings({**spec, "budget": self.budget.settings()})
        return f"{self.task}-{self.family}-{digest(values)}"

    @property
    def label(self) -> str:
        return f"frontier {self.task} {self.family}"

    @property
    def confirms(self) -> bool:
        """Whether a failure is confirmed by another search seed (harness/frontier.py): not
        under a grid, whose seeds (with a split vote's two more) confirm it."""
        return self.budget.tuner != "grid"

    def cell(self, ask: Ask) -> Cell:
        """The cell a probe runs: attempt a uses search seed seed + a*k and its k-1 retrains."""
        first = self.seed + ask.attempt * self.seeds
        extra = tuple(range(first + 1, first + self.seeds))
        return Cell(self.task, ask.length, self.family, self.budget, first, extra, (), self.code)

    @property
    def budget_key(self) -> str:
        """The budget of its cells (attempt 0): frontiers of one budget share a table."""
        return self.cell(Ask(self.min_length, 0, "double")).budget_key

    def params(self) -> dict[str, str]:
        params = {
            CODE: self.code,
            TASK: self.task,
            FAMILY: self.family,
            SEED: self.seed,
            SEEDS: self.seeds,
            MIN_LENGTH: self.min_length,
            MAX_LENGTH: self.max_length,
            RESOLUTION: self.resolution,
        }
        params.update(self.budget.as_params())
        return {
            k: json.dumps(v) if isinstance(v, list | tuple) else v
            for k, v in params.items()
            if v is not None
        }

    def tags(self) -> dict[str, str]:
        return {KIND: FRONTIER, FRONTIER_KEY: self.key, BUDGET_KEY: self.budget_key}


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    cells: tuple[Cell, ...] = field(default_factory=tuple)
    source: str = ""
    frontiers: tuple[FrontierSpec, ...] = field(default_factory=tuple)
    parts: dict[str, frozenset[str]] = field(default_factory=dict)
    """The keys of the cells and frontiers of each part a block names (`part = "..."`), so
    that one command runs one part of a long suite (`--part`)."""


def suite_path(name_or_path: str) -> Path:
    """A bundled suite name (suites/NAME.toml) or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise UserError(f"suite file '{name_or_path}' does not exist")
        return path
    bundled = SUITES_DIR / f"{name_or_path}.toml"
    if not bundled.is_file():
        raise unknown("suite", name_or_path, bundled_suites())
    return bundled


def suite_experiment(suite: str) -> str:
    """The experiment a suite writes to: its name (read from the file when given a path)."""
    if suite.endswith(".toml") or Path(suite).is_file():
        return load_suite(suite).name
    suite_path(suite)  # an unknown name is an error
    return suite


def bundled_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def load_suite(name_or_path: str) -> Suite:
    """Read and validate a suite; any problem is a UserError naming file, key and problem."""
    path = suite_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"suite file '{path}': not valid TOML: {err}") from None
    return parse_suite(data, str(path))


def parse_suite(data: dict, source: str) -> Suite:
    where = f"suite file '{source}'"
    known = {"name", "description", "budget", "seeds", "cells", "frontier"}
    _no_unknown_keys(data, known, where, "")
    name = data.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise UserError(f"{where}: key 'name' must be a non-empty string")
    budget = parse_budget(data.get("budget", {}), Budget(), where, "budget")
    seeds = data.get("seeds", {})
    _no_unknown_keys(seeds, {"search", "extra"}, where, "seeds.")
    seed = check_seed(seeds.get("search", 0), where, "seeds.search")
    extra = seeds.get("extra", [])
    if not isinstance(extra, list):
        raise UserError(f"{where}: key 'seeds.extra' must be a list of integers")
    extra_seeds = tuple(check_seed(s, where, "seeds.extra") for s in extra)
    check_seed_count(1 + len(extra_seeds), f"{where}: key 'seeds.extra'")
    blocks, frontier_blocks = data.get("cells", []), data.get("frontier", [])
    if not isinstance(blocks, list) or not isinstance(frontier_blocks, list):
        raise UserError(f"{where}: [[cells]] and [[frontier]] must be arrays of tables")
    if not blocks and not frontier_blocks:
        raise UserError(
            f"{where}: needs at least one [[cells]] block (tasks, lengths, families) "
            "or [[frontier]] block (tasks, families)"
        )
    cells: list[Cell] = []
    parts: dict[str, set[str]] = {}
    for i, block in enumerate(blocks):
        block_cells = _parse_block(block, budget, seed, extra_seeds, where, f"cells[{i}]")
        _add_part(parts, block, block_cells, where, f"cells[{i}]")
        cells.extend(block_cells)
    if len({c.key for c in cells}) != len(cells):
        raise UserError(f"{where}: the same cell (task, length, family) is listed twice")
    frontiers: list[FrontierSpec] = []
    for i, block in enumerate(frontier_blocks):
        block_frontiers = _parse_frontier(block, budget, seed, where, f"frontier[{i}]")
        _add_part(parts, block, block_frontiers, where, f"frontier[{i}]")
        frontiers.extend(block_frontiers)
    if len({f.key for f in frontiers}) != len(frontiers):
        raise UserError(f"{where}: the same frontier (task, family, settings) is listed twice")
    description = str(data.get("description", ""))
    frozen = {part: frozenset(keys) for part, keys in parts.items()}
    return Suite(name, description, tuple(cells), source, tuple(frontiers), frozen)


def _add_part(parts: dict[str, set[str]], block, units, where: str, key: str) -> None:
    """File the block's units (cells or frontiers) under its `part`, if it names one."""
    part = block.get("part")
    if part is None:
        return
    if not isinstance(part, str) or not part.replace("_", "").replace("-", "").isalnum():
        raise UserError(f"{where}: key '{key}.part' must be a name (letters, digits, - or _)")
    parts.setdefault(part, set()).update(unit.key for unit in units)


def parse_budget(table: object, base: Budget, where: str, key: str) -> Budget:
    """`base` with the keys of `table` replaced, each validated."""
    if not isinstance(table, dict):
        raise UserError(f"{where}: key '{key}' must be a table")
    allowed = {f.name for f in fields(Budget)}
    _no_unknown_keys(table, allowed, where, f"{key}.")
    changes = {}
    for name, value in table.items():
        if name == "fixed":
            changes[name] = _fixed(value, where, f"{key}.fixed")
            continue
        if name == "grid":
            changes[name] = _grid(value, where, f"{key}.grid")
            continue
        if name == "tuner":
            if value not in TUNERS:
                raise UserError(f"{where}: key '{key}.tuner': {unknown('tuner', value, TUNERS)}")
        elif not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise UserError(
                f"{where}: key '{key}.{name}' must be a positive integer, got {value!r}"
            )
        changes[name] = value
    return _grid_budget(base, replace(base, **changes), table, where, key)


def _grid_budget(base: Budget, budget: Budget, table: dict, where: str, key: str) -> Budget:
    """`budget` as a grid search runs it: its axes set (the default grid unless named) and its
    trials the grid's points; a grid named for another tuner, or a trial count or repeated
    executions given with a grid, is an error. Another tuner keeps no grid."""
    from search_spaces.base import DEFAULT_GRID

    if budget.tuner != "grid":
        if "grid" in table:
            raise UserError(
                f"{where}: key '{key}.grid' needs tuner = \"grid\" (tuner is {budget.tuner!r})"
            )
        if base.tuner == "grid" and "max_trials" not in table:
            return replace(budget, grid=None, max_trials=Budget.max_trials)
        return replace(budget, grid=None)
    given_trials = "max_trials" in table or (
        base.tuner != "grid" and base.max_trials != Budget.max_trials
    )
    if given_trials:
        raise UserError(
            f"{where}: key '{key}': a grid search trains every point of its grid: give no "
            'max_trials with tuner = "grid" (its points are its trials)'
        )
    if budget.executions_per_trial != 1:
        raise UserError(
            f"{where}: key '{key}': a grid search trains each point once: give no "
            'executions_per_trial with tuner = "grid" (its seeds repeat the chosen point)'
        )
    grid = budget.grid or DEFAULT_GRID
    return replace(budget, grid=grid, max_trials=math.prod(len(values) for _, values in grid))


def _grid(table: object, where: str, key: str) -> tuple[tuple[str, tuple], ...]:
    """A `grid` table as sorted (name, values) pairs, each a non-empty list of distinct
    numbers, booleans or strings."""
    if not isinstance(table, dict) or not table:
        raise UserError(f"{where}: key '{key}' must be a table of hyperparameter = [values]")
    for name, values in table.items():
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, int | float | bool | str) for v in values)
            or len(set(map(repr, values))) != len(values)
        ):
            raise UserError(
                f"{where}: key '{key}.{name}' must be a list of distinct numbers, booleans or "
                f"strings, got {values!r}"
            )
    return tuple(sorted((name, tuple(values)) for name, values in table.items()))


def _fixed(table: object, where: str, key: str) -> tuple[tuple[str, object], ...]:
    """A `fixed` table as sorted (name, value) pairs of numbers, booleans or strings."""
    if not isinstance(table, dict) or not table:
        raise UserError(f"{where}: key '{key}' must be a table of hyperparameter = value")
    for name, value in table.items():
        if not isinstance(value, int | float | bool | str):
            raise UserError(f"{where}: key '{key}.{name}' must be a number, boolean or string")
    return tuple(sorted(table.items()))


def _parse_block(block, budget, seed, extra_seeds, where, key) -> list[Cell]:
    from search_spaces import get_space
    from tasks import get_task

    if not isinstance(block, dict):
        raise UserError(f"{where}: '{key}' must be a table")
    _no_unknown_keys(
        block, {"tasks", "lengths", "families", "eval_lengths", "budget", "part"}, where, f"{key}."
    )
    for required in ("tasks", "lengths", "families"):
        if not isinstance(block.get(required), list) or not block[required]:
            raise UserError(f"{where}: key '{key}.{required}' must be a non-empty list")
    block_budget = parse_budget(block.get("budget", {}), budget, where, f"{key}.budget")
    lengths = [_positive_int(v, where, f"{key}.lengths") for v in block["lengths"]]
    eval_lengths = [
        _positive_int(v, where, f"{key}.eval_lengths") for v in block.get("eval_lengths", [])
    ]
    cells = []
    for task_name in block["tasks"]:
        try:
            task = get_task(task_name)
            for length in lengths + eval_lengths:
                task.check_length(length)
        except USER_ERRORS as err:
            raise UserError(f"{where}: key '{key}': {err}") from None
        for family in block["families"]:
            try:  # an unknown family, your own that breaks the contract, a budget out of reach
                get_space(family, task, **block_budget.space_settings())
            except USER_ERRORS as err:
                raise UserError(f"{where}: key '{key}.families': {err}") from None
            code = cell_code(task_name, family)
            for length in lengths:
                longer = tuple(sorted(v for v in eval_lengths if v > length))
                cells.append(
                    Cell(task_name, length, family, block_budget, seed, extra_seeds, longer, code)
                )
    return cells


FRONTIER_KEYS = {
    "tasks", "families", "min_length", "max_length", "resolution", "seeds", "budget", "part"
}  # fmt: skip


def _parse_frontier(block, budget, seed, where, key) -> list[FrontierSpec]:
    if not isinstance(block, dict):
        raise UserError(f"{where}: '{key}' must be a table")
    _no_unknown_keys(block, FRONTIER_KEYS, where, f"{key}.")
    for required in ("tasks", "families"):
        if not isinstance(block.get(required), list) or not block[required]:
            raise UserError(f"{where}: key '{key}.{required}' must be a non-empty list")
    defaults = FrontierSpec("", "", budget)
    settings = {}
    for name in ("min_length", "max_length", "seeds"):
        if name in block:
            settings[name] = _positive_int(block[name], where, f"{key}.{name}")
    if "resolution" in block:
        settings["resolution"] = block["resolution"]
    try:
        return frontier_specs(
            block["tasks"],
            block["families"],
            parse_budget(block.get("budget", {}), budget, where, f"{key}.budget"),
            seed,
            settings.get("seeds", defaults.seeds),
            settings.get("min_length", defaults.min_length),
            settings.get("max_length", defaults.max_length),
            settings.get("resolution", defaults.resolution),
        )
    except USER_ERRORS as err:
        raise UserError(f"{where}: key '{key}': {err}") from None


def frontier_specs(
    tasks, families, budget: Budget, seed: int, seeds: int, minimum, maximum, resolution
) -> list[FrontierSpec]:
    """One frontier per task x family, every setting checked before any work."""
    from search_spaces import get_space
    from tasks import get_task

    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, int | float)
        or not 0 < resolution < math.inf
    ):
        raise UserError(f"resolution {resolution!r} must be a finite number above 0 (e.g. 0.25)")
    check_seed_count(seeds, "seeds")
    check_frontier_seeds(seed, seeds)
    if minimum > maximum:
        raise UserError(f"min_length {minimum} is above max_length {maximum}")
    specs = []
    for task_name in tasks:
        task = get_task(task_name)
        for length in (minimum, maximum):
            task.check_length(length)
        for family in families:
            get_space(family, task, **budget.space_settings())  # all checked here
            code = cell_code(task_name, family)
            specs.append(
                FrontierSpec(
                    task_name,
                    family,
                    budget,
                    seed,
                    seeds,
                    minimum,
                    maximum,
                    float(resolution),
                    code,
                )  # fmt: skip
            )
    return specs


def check_seed_count(count: int, where: str) -> None:
    """A cell's seeds are an odd number, so that their majority decides (results.judge)."""
    if count < 1 or count % 2 == 0:
        raise UserError(
            f"{where}: {count} seeds per cell; accepted an odd number (1, 3, 5, ...), so that "
            "a majority of the seeds decides a cell"
        )


def check_frontier_seeds(seed: int, seeds: int) -> None:
    """A frontier's seeds, its confirming cells' included (FrontierSpec.cell), in range."""
    last = seed + 2 * seeds - 1
    if not 0 <= seed <= last <= MAX_SEED:
        raise UserError(
            f"seed {seed} is out of range: a frontier of {seeds} seeds per cell uses seeds "
            f"{seed} to {last} (its confirmations included), which must lie in 0..{MAX_SEED}"
        )


def _no_unknown_keys(table: dict, allowed: set[str], where: str, prefix: str) -> None:
    for name in table:
        if name not in allowed:
            raise UserError(
                f"{where}: unknown key '{prefix}{name}': accepted {', '.join(sorted(allowed))}"
            )


def _positive_int(value, where, key) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UserError(f"{where}: key '{key}' must hold positive integers, got {value!r}")
    return value


def check_seed(value, where, key) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEED:
        raise UserError(f"{where}: key '{key}' must be an integer in 0..{MAX_SEED}, got {value!r}")
    return value
