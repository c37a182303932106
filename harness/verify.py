"""`harness verify`: recompute every number the report would show from the stored models.

For each done cell the report shows (harness/results.py's `standing_cells`), verify
downloads its model artifacts (the search's best model and each extra seed's retrain), rebuilds
the test split from the task's generator with the recorded seed and sizes (never
from the data cache or tuner folders), recomputes the test scores, the longer-length
scores and the per-seed scores with their 95% intervals, then the verdict over the seeds
(those a split vote added included, judged by the rule recorded with the cell) against
the task's own solved bar and baseline, and compares each with the stored metric (the stored bar and
baseline too). A cell whose task's or family's code changed since its run (its `code`
param) is named, not checked. It never trains. A model that cannot be listed, downloaded,
loaded or scored is a mismatch naming its run and what failed. A diverged or failed
cell holds no score: it is named, not checked.

Tolerance: stored and recomputed agree when |stored - recomputed| <= 1e-6 + 1e-4 x
|stored|. A recomputation on the backend and device that stored the number gives it
back to float rounding. Another machine rounds differently, and a class prediction whose
top two probabilities are within that relative tolerance of each other (a near-tie) may
fall either way there: so a score of class predictions agrees anywhere in the range its
near-ties span, decided all for the target or all against it (`score_ranges`), widened by
the tolerance (docs/results.md measures how far rounding moves them). Any other
difference is a mismatch, named.
"""

from __future__ import annotations

import functools
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import first_line
from harness.results import (
    BASELINE,
    CODE,
    EVALUATION_MEMORY,
    FRONTIER_KEY,
    NEAR_BAR,
    OUT_OF_MEMORY,
    SEED_MEAN,
    SEEDS_SOLVED,
    SOLVED,
    SOLVED_BAR,
    TEST_EXAMPLES,
    TEST_SCORE,
    CellResult,
    CellState,
    at_length,
    interval_name,
    judge,
    score_name,
    task_score_name,
)
from harness.tracking import Tracker
from tasks.base import IGNORE

ABSOLUTE, RELATIVE = 1e-6, 1e-4


@dataclass(frozen=True)
class Check:
    """One stored number against its recomputation (`recomputed` nan: could not be) and the
    range its near-ties allow (`low`, `high`; the recomputation alone where there are none)."""

    run_id: str
    cell: str
    metric: str
    stored: float
    recomputed: float
    note: str = ""
    low: float | None = None
    high: float | None = None

    @property
    def ok(self) -> bool:
        if self.note:
            return False
        if math.isnan(self.stored) and math.isnan(self.recomputed):
            return True
        low = self.recomputed if self.low is None else self.low
        high = self.recomputed if self.high is None else self.high
        return low - self.slack <= self.stored <= high + self.slack

    @property
    def slack(self) -> float:
        return ABSOLUTE + RELATIVE * abs(self.stored)

    @property
    def by_near_ties(self) -> bool:
        """Agreed only because near-ties may fall the other way on the machine that stored it."""
        return self.ok and abs(self.stored - self.recomputed) > self.slack


def decided(y_true: np.ndarray, probs: np.ndarray, for_target: bool) -> np.ndarray:
    """Class probabilities `probs` with every near-tie decided for the target (a wrong top class
    the target is within RELATIVE of) or against it (a right top class the runner-up is within
    RELATIVE of); values (not one probability per class per target) come back as they are."""
    if probs.ndim < 2 or probs.shape[-1] < 2 or probs.shape[:-1] != y_true.shape:
        return probs
    scored = y_true != IGNORE
    target = np.where(scored, y_true, 0)[..., None]
    top = probs.max(axis=-1)
    hit = (np.argmax(probs, axis=-1) == target[..., 0]) & scored
    if for_target:
        rival = target
        near = scored & ~hit
    else:
        rival = np.argmax(np.where(np.arange(probs.shape[-1]) == target, -np.inf, probs), -1)
        rival = rival[..., None]
        near = hit
    rivals = np.take_along_axis(probs, rival, axis=-1)[..., 0]
    near &= rivals >= top * (1 - RELATIVE)
    out = probs.copy()
    raised = np.where(near, np.nextafter(top, np.inf), rivals)  # just above the top class
    np.put_along_axis(out, rival, raised[..., None], axis=-1)
    return out


def score_ranges(task, y_true: np.ndarray, probs: np.ndarray) -> dict[str, tuple[float, ...]]:
    """Each of the task's scores of `probs`: (as computed, lowest, highest over the near-ties
    decided all for the target and all against it)."""
    return recomputed_ranges(task, y_true, probs)[0]


def recomputed_ranges(task, y_true: np.ndarray, probs: np.ndarray) -> tuple[dict, tuple]:
    """`score_ranges`, and the same range for each bound of the primary score's 95% interval
    (harness/intervals.py), the near-ties decided once for both."""
    from harness.intervals import score_interval

    variants = (probs, decided(y_true, probs, True), decided(y_true, probs, False))
    variant_scores = [task.scores(y_true, p) for p in variants]
    primary = task.metric.name
    bounds = [
        score_interval(task, y_true, p, f[primary])
        for p, f in zip(variants, variant_scores, strict=True)
    ]

    def spread(values: list[float]) -> tuple[float, ...]:
        return values[0], min(values), max(values)

    scores = {name: spread([f[name] for f in variant_scores]) for name in variant_scores[0]}
    return scores, tuple(spread([b[i] for b in bounds]) for i in (0, 1))


def check_cell(tracker: Tracker, cell: CellResult) -> list[Check]:
    """Every stored score of one done cell against its recomputation from the stored models:
    the best model's (seed None) and each extra seed's retrain's, at its length and longer."""
    from harness.provenance import code_changed
    from harness.stored import (
        ModelUnavailable,
        OutOfMemory,
        model_file,
        predictions,
        stored_model,
    )
    from tasks import get_task

    checks: list[Check] = []

    def compare(metric: str, recomputed: float, note: str = "", low=None, high=None) -> None:
        stored = cell.metrics.get(metric, math.nan)
        label = cell_label(cell)
        checks.append(Check(cell.run_id, label, metric, stored, recomputed, note, low, high))

    def compare_range(metric: str, ranges: tuple[float, ...]) -> None:
        compare(metric, ranges[0], low=ranges[1], high=ranges[2])

    if CODE in cell.params:  # a run that holds its code's hashes
        changed = code_changed(cell)
        if changed:
            compare(TEST_SCORE, math.nan, changed)
            return checks
    task = get_task(cell.task)
    primary = task.metric.name
    bar, baseline = task.solved_bar(cell.length), task.baseline(cell.length)
    compare(SOLVED_BAR, bar)  # the verdict is the task's, never a stored bar's or baseline's
    compare(BASELINE, baseline)
    for length in sorted(cell.longer):
        for name, value in ((SOLVED_BAR, task.solved_bar), (BASELINE, task.baseline)):
            if at_length(name, length) in cell.metrics:
                compare(at_length(name, length), value(length))
    batch, n_test = cell.budget.batch_size, cell.budget.n_test
    split = functools.cache(lambda length: task.generate(n_test, length, cell.seed, "test"))

    memory = cell.metrics.get(EVALUATION_MEMORY)  # none in a store made before it was recorded

    def recompute(model, length: int, memory_gb: float | None = None) -> tuple[dict, tuple]:
        """Each score's range and the primary score's interval's ranges at `length`."""
        x, y = split(length)
        probs = predictions(model, x, batch, memory_gb)
        return recomputed_ranges(task, y, probs)

    def longer_score(model, length: int) -> tuple[tuple, tuple | None, bool]:
        """(the primary score's range, its interval's ranges, whether it was out of memory)
        at a longer length, as the run tested it: in batches that fit the memory it recorded."""
        try:
            ranges, interval = recompute(model, length, memory)
        except OutOfMemory:
            return (math.nan,) * 3, None, True
        return ranges[primary], interval, False

    def compare_interval(seed: int | None, length: int | None, interval) -> None:
        """The stored interval's bounds against their ranges, where an interval is stored."""
        which = cell.seed if seed is None else seed
        if interval is not None and cell.interval(which, length) is not None:
            for name, bound in zip(interval_name(seed, length), interval, strict=True):
                compare_range(name, bound)

    recomputed_seeds: dict[int, tuple[float, ...]] = {}
    recomputed_intervals: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [None, *cell.seeds[1:]]:
            which = cell.seed if seed is None else seed
            lengths = sorted(cell.longer_by_seed.get(which, {}))
            try:
                model = stored_model(tracker, cell.run_id, model_file(seed), Path(tmp))
                diverged = seed is not None and math.isnan(cell.seed_scores.get(seed, 0.0))
                if model is None and diverged:  # a retrain that diverged keeps no model
                    recomputed_seeds[seed] = (math.nan,) * 3
                    continue
                if model is None:
                    raise ModelUnavailable(f"artifact {model_file(seed)} is missing")
                ranges, interval = recompute(model, cell.length)
                longer = {length: longer_score(model, length) for length in lengths}
            except ModelUnavailable as error:
                compare(score_name(seed), math.nan, str(error))
                continue
            except Exception as error:  # a model that loads but cannot score this task's data
                why = f"artifact {model_file(seed)} cannot be scored: {first_line(error)}"
                compare(score_name(seed), math.nan, why)
                continue
            compare_range(score_name(seed), ranges[primary])
            if seed is None and TEST_EXAMPLES in cell.metrics:
                compare(TEST_EXAMPLES, float(len(split(cell.length)[1])))
            compare_interval(seed, None, interval)
            recomputed_intervals[which] = (interval[0][0], interval[1][0])
            if seed is None:
                for name, value in sorted(ranges.items()):
                    compare_range(task_score_name(name), value)
            for length, (value, bounds, out_of_memory) in longer.items():
                compare_range(score_name(seed, length), value)
                compare_interval(seed, length, bounds)
                if seed is None and (out_of_memory or cell.out_of_memory_at(length)):
                    compare(at_length(OUT_OF_MEMORY, length), float(out_of_memory))
            recomputed_seeds[which] = ranges[primary]
    if len(recomputed_seeds) == len(cell.seeds):
        seeds = [recomputed_seeds[s] for s in cell.seeds]
        bounds = [recomputed_intervals.get(s) for s in cell.seeds]
        verdict, lowest, highest = (
            judge(
                [seed_ranges[i] for seed_ranges in seeds],
                bar,
                baseline,
                task.metric.direction,
                bounds,
                cell.rule,
            )
            for i in range(3)
        )
        compare(SEED_MEAN, verdict.mean, low=lowest.mean, high=highest.mean)
        compare(SEEDS_SOLVED, verdict.seeds_solved)
        compare(SOLVED, float(verdict.solved))
        if NEAR_BAR in cell.metrics:
            compare(NEAR_BAR, float(verdict.near_bar))
    return checks


def cell_label(cell: CellResult) -> str:
    return cell.label


@dataclass
class Verification:
    """What verify found in an experiment: a check per stored number, and the cells with no
    number to check."""

    experiment: str
    checks: list[Check]
    unscored: list[CellResult]  # diverged or failed: no model was trained, nothing was scored

    @property
    def mismatches(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        """No stored number disagrees with its recomputation."""
        return not self.mismatches


def verify(
    tracker: Tracker,
    experiment: str,
    progress: Callable[[str], None] = lambda line: None,
    keys: set[str] | None = None,
) -> Verification:
    """Check every cell the report would show for `experiment` (with `keys`, those of these
    cell keys and those the frontiers of these frontier keys probed: one part of a suite)."""
    from harness.frontier import FrontierResult
    from harness.report.read import read_store

    verification = Verification(experiment, [], [])
    results = read_store(tracker, experiment, progress)
    probed: set[str] = set()
    for run in results.runs if keys is not None else []:
        frontier = FrontierResult.from_run(run) if run.tags.get(FRONTIER_KEY) in keys else None
        if frontier is not None:
            probed |= {step.run_id for step in frontier.bracket.steps}
    for cell in results.cells:
        if keys is not None and cell.key not in keys and cell.run_id not in probed:
            continue
        if cell.state is not CellState.DONE:
            verification.unscored.append(cell)
            continue
        progress(f"verifying {cell_label(cell)} (run {cell.run_id[:8]})")
        if cell.legacy:
            note = "recorded before verify existed: no models to recompute from"
            verification.checks.append(
                Check(cell.run_id, cell_label(cell), TEST_SCORE, cell.test_score, math.nan, note)
            )
            continue
        verification.checks += check_cell(tracker, cell)
    return verification
