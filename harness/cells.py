"""Which cells a command works on (a suite, filtered or overridden by flags) and their state."""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.errors import UserError
from harness.suites import Cell, Suite, load_suite, parse_budget, parse_suite
from harness.tracking import Tracker

ADHOC = "adhoc"


def select_cells(suite_name, tasks, lengths, families, budget, seed, extra_seeds, eval_lengths):
    """The suite and the cells to run: a suite filtered by the flags, or one block built from them."""
    if suite_name is None:
        missing = [
            flag
            for flag, value in (("--task", tasks), ("--length", lengths), ("--family", families))
            if not value
        ]
        if missing:
            raise UserError(
                f"give --suite, or all of --task, --length, --family (missing {', '.join(missing)})"
            )
        block = {"tasks": list(tasks), "lengths": list(lengths), "families": list(families)}
        if eval_lengths:
            block["eval_lengths"] = list(eval_lengths)
        seeds = {"search": 0 if seed is None else seed, "extra": list(extra_seeds or [])}
        suite = parse_suite(
            {"name": ADHOC, "budget": budget, "seeds": seeds, "cells": [block]},
            "command-line flags",
        )
        return suite, list(suite.cells)
    suite = load_suite(suite_name)
    cells = [
        c
        for c in suite.cells
        if (not tasks or c.task in tasks)
        and (not lengths or c.length in lengths)
        and (not families or c.family in families)
    ]
    if not cells:
        raise UserError(f"no cell of suite '{suite.name}' matches --task/--length/--family")
    if budget:
        cells = [
            replace(c, budget=parse_budget(budget, c.budget, "command-line flags", "budget"))
            for c in cells
        ]
    overrides = {}
    if seed is not None:
        overrides["seed"] = seed
    if extra_seeds:
        overrides["extra_seeds"] = tuple(extra_seeds)
    if eval_lengths:
        raise UserError("--eval-length works without --suite; a suite sets eval_lengths per block")
    cells = [replace(c, **overrides) for c in cells]
    return Suite(suite.name, suite.description, tuple(cells), suite.source), cells


def parse_shard(text: str) -> tuple[int, int]:
    """`--shard I/N` as (I, N), with 1 <= I <= N."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise UserError(f"--shard '{text}' is not I/N with 1 <= I <= N (e.g. 1/3, 2/3, 3/3)")
    return int(index), int(count)


def shard_cells(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """Shard `index` of `count`: every count-th cell in cell-key order, in suite order.

    The split depends only on the cells' keys, so N machines given the same
    suite and flags run each cell exactly once, with no scheduler.
    """
    mine = set(sorted(cell.key for cell in cells)[index - 1 :: count])
    return [cell for cell in cells if cell.key in mine]


@dataclass(frozen=True)
class CellState:
    state: str  # "done", "partial", "not started"
    trials_done: int
    trials_planned: int
    test_score: float | None = None


def cell_states(tracker: Tracker, experiment: str, cells) -> list[tuple[Cell, CellState]]:
    """Each cell's state in the store, read from its parent and child runs."""
    experiment_id = tracker.experiment_id(experiment, create=False)
    states = []
    for cell in cells:
        planned = cell.budget.max_trials
        run = tracker.cell_run(experiment_id, cell.key) if experiment_id else None
        if run is None:
            states.append((cell, CellState("not started", 0, planned)))
            continue
        trials = tracker.trial_runs(experiment_id, run.info.run_id)
        done = sum(t.info.status in ("FINISHED", "FAILED") for t in trials)
        if run.info.status == "FINISHED":
            states.append(
                (cell, CellState("done", done, planned, run.data.metrics.get("test_score")))
            )
        else:
            states.append((cell, CellState("partial", done, planned)))
    return states
