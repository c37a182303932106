"""Which cells a command works on (a suite, filtered or overridden by flags) and their state."""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness import liveness
from harness.errors import USER_ERRORS, UserError
from harness.results import (
    CELL,
    CELL_KEY,
    EPOCH,
    EPOCH_SECONDS,
    FRONTIER,
    KIND,
    PARENT,
    RETRAIN,
    RETRAIN_SEED,
    TRIAL,
    TRIAL_ID,
    TRIALS_COMPLETED,
    CellResult,
    CellState,
    Outcome,
    run_order,
    standing_run,
    trial_counts,
)
from harness.suites import (
    check_frontier_seeds,
    check_seed,
    check_seed_count,
    load_suite,
    parse_budget,
    parse_suite,
)
from harness.tracking import Tracker

ADHOC = "adhoc"


def select_cells(
    suite_name, tasks, lengths, families, budget, seed, extra_seeds, eval_lengths, part=None
):
    """The suite and what to run of it: (suite, cells, frontiers). A suite filtered by the
    flags (--part keeps one part's blocks, --length leaves its frontiers out), or one block
    of cells built from them."""
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
        if part is not None:
            raise UserError("--part names a part of a suite: give --suite too")
        return suite, list(suite.cells), []
    suite = load_suite(suite_name)
    if part is not None and part not in suite.parts:
        accepted = ", ".join(sorted(suite.parts)) or "none (no block names a part)"
        raise UserError(f"unknown part '{part}' of suite '{suite.name}': accepted {accepted}")
    kept = suite.parts.get(part) if part is not None else None

    def wanted(item, length=None) -> bool:
        return (
            (kept is None or item.key in kept)
            and (not tasks or item.task in tasks)
            and (not families or item.family in families)
            and (not lengths or length in lengths)
        )

    cells = [c for c in suite.cells if wanted(c, c.length)]
    frontiers = [f for f in suite.frontiers if wanted(f)] if not lengths else []
    if not cells and not frontiers:
        raise UserError(f"no cell of suite '{suite.name}' matches --task/--length/--family")
    if eval_lengths:
        raise UserError("--eval-length works without --suite; a suite sets eval_lengths per block")
    if seed is not None:
        check_seed(seed, "command-line flags", "--seed")
    for value in extra_seeds or []:
        check_seed(value, "command-line flags", "--extra-seed")
    if extra_seeds:
        check_seed_count(1 + len(extra_seeds), "command-line flags: --extra-seed")
    cells = [
        replace(
            c,
            budget=parse_budget(budget, c.budget, "command-line flags", "budget"),
            **({"seed": seed} if seed is not None else {}),
            **({"extra_seeds": tuple(extra_seeds)} if extra_seeds else {}),
        )
        for c in cells
    ]
    frontiers = [
        replace(
            f,
            budget=parse_budget(budget, f.budget, "command-line flags", "budget"),
            **({"seed": seed} if seed is not None else {}),
        )
        for f in frontiers
    ]
    for spec in frontiers:
        check_frontier_seeds(spec.seed, spec.seeds)
    if budget:
        check_budgets([*cells, *frontiers])
    return replace(suite, cells=tuple(cells), frontiers=tuple(frontiers)), cells, frontiers


def check_budgets(items) -> None:
    """Each family's parameter budget on each task of `items` (cells, frontiers), before any
    work: one that cannot be met names the family, the task and the smallest budget it can."""
    from search_spaces import get_space
    from tasks import get_task

    wanted = ((i.task, i.family, i.budget) for i in items)
    for task, family, budget in dict.fromkeys(wanted):
        try:
            get_space(family, get_task(task), **budget.space_settings())
        except USER_ERRORS as err:
            raise UserError(f"command-line flags: {err}") from None


def parse_shard(text: str) -> tuple[int, int]:
    """`--shard I/N` as (I, N), with 1 <= I <= N."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
        raise UserError(f"--shard '{text}' is not I/N with 1 <= I <= N (e.g. 1/3, 2/3, 3/3)")
    return int(index), int(count)


def shard_cells(items: list, index: int, count: int) -> list:
    """Shard `index` of `count`: every count-th cell (or frontier) in key order, in suite order.

    The split depends only on the keys, so N machines given the same suite and flags
    run each cell and frontier exactly once, with no scheduler.
    """
    mine = set(sorted(item.key for item in items)[index - 1 :: count])
    return [item for item in items if item.key in mine]


@dataclass(frozen=True)
class CellStatus:
    """One cell as the store holds it: its state, trials done of planned, its verdict."""

    label: str
    state: CellState
    trials_done: int
    trials_planned: int
    result: CellResult | None = None
    running: tuple[str, ...] = ()  # each running trial's epoch, as `trial_progress` says it


def trial_progress(trial, epochs: int) -> str:
    """A running trial's (or retrain's) latest epoch as its run holds it: "trial 1: epoch 3 of 10,
    validation 0.5123, 2.1 s per epoch" ("starting" before its first epoch ends; a run
    whose process on this host is gone says so)."""
    metrics, tags = trial.metrics, trial.tags
    name = (
        f"retrain seed {tags[RETRAIN_SEED]}"
        if tags.get(KIND) == RETRAIN
        else f"trial {tags.get(TRIAL_ID, '?')}"
    )
    if liveness.dead_here(trial.tags):
        return f"{name}: its process has died (a resume reruns it)"
    if EPOCH not in metrics:
        return f"{name}: starting"
    scores = [v for k, v in sorted(metrics.items()) if k.startswith("val_") and k != "val_loss"]
    score = f"validation {scores[0]:.4g}, " if scores else ""
    return (
        f"{name}: epoch {int(metrics[EPOCH])} of {epochs}, {score}"
        f"{metrics.get(EPOCH_SECONDS, float('nan')):.1f} s per epoch"
    )


def cell_states(tracker: Tracker, experiment: str, cells=None) -> list[CellStatus]:
    """Each cell's state, read from one pass over the experiment's runs.

    With `cells` (a suite's), every one of them, started or not; without, every cell
    the store holds (the run standing for each key: results.standing_run).
    """
    experiment_id = tracker.experiment_id(experiment, create=False)
    runs = tracker.runs(experiment_id) if experiment_id else []
    by_key: dict[str, list] = {}
    children: dict[str, list] = {}
    retraining: dict[str, list] = {}
    for run in sorted(runs, key=run_order):
        tags = run.tags
        if tags.get(KIND) == CELL and tags.get(CELL_KEY):
            by_key.setdefault(tags[CELL_KEY], []).append(run)
        elif tags.get(KIND) == TRIAL:
            children.setdefault(tags.get(PARENT, ""), []).append(run)
        elif tags.get(KIND) == RETRAIN and run.status == "RUNNING":
            retraining.setdefault(tags.get(PARENT, ""), []).append(run)
    parents = {key: standing_run(group) for key, group in by_key.items()}
    if cells is None:
        results = [CellResult.from_run(run) for run in parents.values()]
        wanted = [(r.key, r.label, r.budget) for r in results if r]
    else:
        wanted = [(c.key, c.label, c.budget) for c in cells]
    states = []
    for key, label, budget in wanted:
        planned = budget.trials
        run = parents.get(key)
        if run is None:
            states.append(CellStatus(label, CellState.NOT_STARTED, 0, planned))
            continue
        trials = children.get(run.run_id, [])
        outcomes = [Outcome.of(t.tags, t.status) for t in trials]
        done = trial_counts(outcomes)[TRIALS_COMPLETED]
        state = CellState.of(run.status, outcomes)
        running = tuple(
            trial_progress(t, budget.epochs)
            for t, outcome in zip(trials, outcomes, strict=True)
            if outcome is None and t.status == "RUNNING"
        ) + tuple(trial_progress(r, budget.epochs) for r in retraining.get(run.run_id, []))
        result = CellResult.from_run(run)
        states.append(CellStatus(label, state, done, planned, result, running))
    return states


def frontier_states(tracker: Tracker, experiment: str) -> list[str]:
    """One line per frontier run of the experiment: its bracket, or its cells so far."""
    from harness.frontier import FrontierResult

    experiment_id = tracker.experiment_id(experiment, create=False)
    runs = tracker.runs(experiment_id, f"tags.`{KIND}` = '{FRONTIER}'") if experiment_id else []
    lines = []
    for run in sorted(runs, key=run_order):
        result = FrontierResult.from_run(run)
        if result is None:
            continue
        if result.finished:
            lines.append(f"frontier {result.task} {result.family}: {result.bracket.text()} (done)")
        else:
            probed = len(result.bracket.steps)
            cells = f"{probed} cell{'s' * (probed != 1)}"
            lines.append(f"frontier {result.task} {result.family}: {cells} so far (partial)")
    return lines
