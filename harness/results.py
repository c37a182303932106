"""What a result is: the names MLflow runs carry, a dataclass per kind of run, and the rules
the numbers obey.

Whatever writes a run writes through this module (the runner, the frontier, the
rotation construction, the probes' `start_probe`); report, status and verify read
through it. The rules, each defined once here:

- a trial's outcome: finished, diverged (its loss became NaN or infinite), failed (it
  raised, or its worker was lost twice) or killed (interrupted or its worker lost: run
  again on resume). Finished, diverged and failed trials are done; killed ones are not.
- a cell's state: not started, partial (its run is not finished), done (a best model
  was evaluated), diverged (no trial finished, some diverged) or failed (every trial
  failed).
- solved (`judge`): a seed solves when its own test score meets the task's bar
  (tasks.base.meets, the one definition, early stopping's too); a seed that diverged
  fails (it scores the trivial baseline in the mean, never dropped). A cell is solved
  when more than half of its seeds solve (an odd number: the search's best model and
  the retrains of its configuration; a split vote added two seeds, ADDED_SEEDS). A
  seed whose 95% interval (harness/intervals.py) holds the bar is near it; a verdict
  that flips when one such seed flips is marked near the bar. Cells written before
  this rule (no VERDICT_RULE tag) are judged as they were: by the mean over seeds.
- budget (harness/budget.py, one typed definition written and read): every setting
  that changes results (tuner and its grid, trials, epochs, batch size, data sizes, the
  parameter budget) and the seeds name it; how work was spread (workers, shards) is not
  part of it. A table compares cells of one budget.
- which run stands for a cell (`standing_run`): of its runs, the latest FINISHED one,
  else the latest (unfinished: a rerun resumes it). Running a cell (`harness run`,
  `status`) knows it by its key; reading one (the report, verify, the probes) by its
  budget, task, length and family (`standing_cells`), showing finished runs only.
- what older versions wrote: read through `normalise`, in today's words; a store is never
  rewritten.

What a run starts with (the machine, the code) is written by harness/provenance.py; a
cell's stored models are read by harness/stored.py. The rest stays in this one module on
purpose: a reader interpreting a stored run (a `StoredRun`) finds every name and rule it
needs here, and nothing else.
"""

from __future__ import annotations

import enum
import json
import math
import re
import statistics
from dataclasses import dataclass, field

from harness.budget import Budget
from harness.intervals import holds
from tasks.base import meets

# -- kinds of run (tag KIND) --------------------------------------------------------------
CELL, TRIAL, FRONTIER, PROBE = "cell", "trial", "frontier", "probe"
RETRAIN = "retrain"  # a child of a cell: one extra seed's retrain, its epochs as a trial's

# -- tags ---------------------------------------------------------------------------------
KIND = "harness.kind"
SCHEMA = "harness.schema"  # on every cell run the harness starts: SCHEMA_VERSION
SCHEMA_VERSION = "2"  # older cells read as "1", or "0" before FUSED_OBSERVED (`normalise`)
CELL_KEY = "harness.cell_key"
BUDGET_KEY = "harness.budget_key"
FRONTIER_KEY = "harness.frontier_key"
TRIAL_ID = "harness.trial_id"
RETRAIN_SEED = "harness.retrain_seed"
PARENT = "mlflow.parentRunId"
STATUS = "harness.status"  # a trial's outcome, or a cell's state
REASON = "harness.reason"
WORKER = "harness.worker"
PHASE = "harness.phase"
PROBE_NAME = "harness.probe"
BEST_TRIAL = "harness.best_trial"
DIVERGED_SEEDS = "harness.diverged_seeds"
ADDED_SEEDS = "harness.added_seeds"  # seeds a split vote added ("3,4"), beyond extra_seeds
VERDICT_RULE = "harness.verdict_rule"  # how the cell is judged: MAJORITY (none: MEAN)
MAJORITY, MEAN = "majority", "mean"
DERIVED = "harness.derived"  # hyperparameters a trial did not search (the budget's width)
FUSED_OBSERVED = "harness.fused_rnn_kernel_observed"  # done cells of schema 1 on
FRONTIER_CELLS = "harness.frontier_cells"
HOST, PID, PROCESS_START = "harness.host", "harness.pid", "harness.process_start"
"""The process that opened a run (harness/liveness.py): a run left RUNNING by one that
died on this host is ended KILLED on resume."""
# the machine and code a run was made with (environment_tags)
VERSION, GIT_COMMIT = "harness.version", "harness.git_commit"
DEVICE, BACKEND, FRAMEWORK = "harness.device", "harness.backend", "harness.framework"
KERAS, KERAS_TUNER = "harness.keras", "harness.keras_tuner"

# -- params of a cell run (besides budget.*) ----------------------------------------------
TASK, LENGTH, FAMILY = "task", "length", "family"
SEED, EXTRA_SEEDS = "seed", "extra_seeds"  # the search's seed; its retrains' (JSON list)
METRIC, DIRECTION = "metric", "direction"  # the task's primary metric and "min" or "max"
EVAL_LENGTHS = "eval_lengths"  # the longer lengths its best model is tested at (JSON list)
CODE = "code"  # the hashes of the code of its task's data and its family's model (JSON)
CODE_ROOTS = "code_roots"  # where your own task's or family's modules are imported from

# -- params of a frontier run (besides task, family, seed, code and budget.*) ----------------
SEEDS = "seeds"  # seeds per probed cell
MIN_LENGTH, MAX_LENGTH, RESOLUTION = "min_length", "max_length", "resolution"

# -- metrics of a cell run ----------------------------------------------------------------
TEST_SCORE = "test_score"  # the task's metric of the search's best model on the test split
TEST_EXAMPLES = "test_examples"  # the distinct test sequences scored (n_test, or all a task has)
BASELINE, SOLVED_BAR = "baseline", "solved_bar"
SEED_MEAN, SEED_STD, SEED_COUNT = "seed_mean", "seed_std", "seed_count"
SEEDS_SOLVED, SOLVED = "seeds_solved", "solved"
NEAR_BAR = "near_bar"  # 1.0 when the verdict flips with one seed whose interval holds the bar
COMPILE_SECONDS = "compile_seconds"
SEARCH_SECONDS, SECONDS_PER_EPOCH = "search_seconds", "seconds_per_epoch"
EPOCHS_TO_SOLVE, BEST_VAL_SCORE = "epochs_to_solve", "best_val_score"
TRIALS_COMPLETED, TRIALS_FINISHED = "trials_completed", "trials_finished"
TRIALS_DIVERGED, TRIALS_FAILED = "trials_diverged", "trials_failed"
PARAMETERS = "parameters"  # a model's trainable and other parameters (cell and trial runs)
EVALUATION_MEMORY = "evaluation_memory_gb"  # the memory a test at a longer length may take
OUT_OF_MEMORY = "out_of_memory"  # 1.0 at a longer length its tests did not fit (at_length)

# -- metrics of a frontier run (cells probed, its bracket) ----------------------------------
CELLS, NON_MONOTONE = "cells", "non_monotone"
LONGEST_SOLVED, SHORTEST_FAILED = "longest_solved", "shortest_failed"

# -- metrics of a trial run ---------------------------------------------------------------
TRIAL_SECONDS, EPOCHS, OBJECTIVE = "trial_seconds", "epochs", "objective"
EPOCH, EPOCH_SECONDS = "epoch", "epoch_seconds"  # each epoch's (step: the epoch, from 0)
_SCORE_NAME = re.compile(rf"{TEST_SCORE}(?:_seed_(\d+))?(?:_len_(\d+))?")


def at_length(name: str, length: int) -> str:
    """A metric's name at a longer length than the cell's: `baseline_len_200`."""
    return f"{name}_len_{length}"


def score_name(seed: int | None = None, length: int | None = None) -> str:
    """The metric of a test score: the search's best model (seed None) or the retrain with
    `seed`, at the cell's length (length None) or a longer one."""
    name = TEST_SCORE if seed is None else f"{TEST_SCORE}_seed_{seed}"
    return name if length is None else at_length(name, length)


def score_of(name: str) -> tuple[int | None, int | None] | None:
    """(seed, length) of a test score's metric name (`score_name` read back), else None."""
    match = _SCORE_NAME.fullmatch(name)
    if match is None:
        return None
    seed, length = match.groups()
    return (None if seed is None else int(seed)), (None if length is None else int(length))


def interval_name(seed: int | None = None, length: int | None = None) -> tuple[str, str]:
    """The metrics of the 95% interval of a test score (`score_name`): its low and high bound."""
    return f"{score_name(seed, length)}_low", f"{score_name(seed, length)}_high"


def task_score_name(name: str) -> str:
    """The metric of one of the task's scores (primary or extra) of the best model: test_mse."""
    return f"test_{name}"


def machine_of(tags: dict[str, str]) -> str:
    """One line naming the device, Keras, backend and framework of a run."""
    device, keras, backend, framework = (
        tags.get(name, "unknown") for name in (DEVICE, KERAS, BACKEND, FRAMEWORK)
    )
    return f"{device}; Keras {keras} on {backend} ({framework})"


# -- a stored run ------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredRun:
    """A run as the store holds it, whichever door read it (harness/tracking.py: MLflow's
    Run converted by the Tracker, or a SQLite store's rows read by SqliteSnapshot). Every
    reader of runs reads this, never MLflow's objects."""

    run_id: str
    experiment_id: str
    status: str  # the MLflow run status: RUNNING, FINISHED, FAILED, KILLED, SCHEDULED
    start_time: int  # milliseconds since the epoch
    end_time: int | None  # None while it runs
    run_name: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # each metric's latest value


# -- trials -------------------------------------------------------------------------------
class Outcome(enum.StrEnum):
    """How a trial ended."""

    FINISHED = "finished"
    DIVERGED = "diverged"
    FAILED = "failed"
    KILLED = "killed"

    @property
    def run_status(self) -> str:
        """The MLflow run status a trial of this outcome ends with."""
        return {"finished": "FINISHED", "killed": "KILLED"}.get(self.value, "FAILED")

    @property
    def done(self) -> bool:
        """Whether the trial counts as done (a killed one runs again on resume)."""
        return self is not Outcome.KILLED

    @classmethod
    def of(cls, tags: dict[str, str], run_status: str) -> Outcome | None:
        """The outcome recorded on a trial run; None while it runs (or was never closed)."""
        value = normalise(TRIAL, run_status, tags)[0].get(STATUS)
        if value in cls._value2member_map_:
            return cls(value)
        return cls.KILLED if run_status == "KILLED" else None


def trial_counts(outcomes: list[Outcome | None]) -> dict[str, int]:
    """The cell's trial counts as metrics: done (finished, diverged, failed) and each kind."""
    return {
        TRIALS_COMPLETED: sum(1 for o in outcomes if o is not None and o.done),
        TRIALS_FINISHED: outcomes.count(Outcome.FINISHED),
        TRIALS_DIVERGED: outcomes.count(Outcome.DIVERGED),
        TRIALS_FAILED: outcomes.count(Outcome.FAILED),
    }


# -- cells --------------------------------------------------------------------------------
class CellState(enum.StrEnum):
    NOT_STARTED = "not started"
    PARTIAL = "partial"
    DONE = "done"
    DIVERGED = "diverged"
    FAILED = "failed"

    @classmethod
    def of(cls, run_status: str | None, outcomes: list[Outcome | None]) -> CellState:
        """A cell's state from its parent run's status and its trials' outcomes."""
        if run_status is None:
            return cls.NOT_STARTED
        if run_status != "FINISHED":
            return cls.PARTIAL
        if Outcome.FINISHED in outcomes:
            return cls.DONE
        return cls.DIVERGED if Outcome.DIVERGED in outcomes else cls.FAILED


@dataclass(frozen=True)
class Verdict:
    """Whether a cell is solved, from its seeds' test scores (the one definition: `judge`)."""

    mean: float
    std: float
    seeds: int
    seeds_solved: int
    seeds_diverged: int
    solved: bool
    near_bar: bool = False
    """The verdict flips when one seed whose interval holds the bar flips."""
    rule: str = MAJORITY

    def text(self, digits: int = 4) -> str:
        """The number a table prints: the mean (± std over seeds), the seeds that solve of
        all (k/n), ✓ when solved, ≈ when near the bar."""
        if self.seeds == 0:
            return "—"
        number = f"{self.mean:.{digits}g}"
        if self.seeds > 1:
            number += f" ± {self.std:.2g}"
        number += f" ({self.seeds_solved}/{self.seeds})"
        return number + (" ✓" if self.solved else "") + (" ≈" if self.near_bar else "")

    def seeds_text(self) -> str:
        """The seeds in words: "2 of 3 seeds, 1 diverged, near the bar"."""
        text = f"{self.seeds_solved} of {self.seeds} seeds"
        text += f", {self.seeds_diverged} diverged" if self.seeds_diverged else ""
        text += ", near the bar" if self.near_bar else ""
        if self.rule == MEAN:
            text += ", judged by the mean (stored before majority verdicts)"
        return text

    @property
    def split(self) -> bool:
        """Neither every seed nor none solves: the vote that earns two more seeds."""
        return 0 < self.seeds_solved < self.seeds


def judge(
    scores: list[float],
    bar: float,
    baseline: float,
    direction: str,
    intervals: list[tuple[float, float] | None] | None = None,
    rule: str = MAJORITY,
) -> Verdict:
    """The verdict on a cell's seed scores (nan = a seed that diverged), each with its 95%
    interval where known: solved when more than half of the seeds meet the bar (`rule`
    MEAN, for cells stored before: when their mean does)."""
    counted = [s if math.isfinite(s) else baseline for s in scores]
    if not counted:
        return Verdict(math.nan, math.nan, 0, 0, 0, False, False, rule)
    mean = statistics.fmean(counted)
    std = statistics.stdev(counted) if len(counted) > 1 else 0.0
    solves = [meets(s, bar, direction) for s in scores]
    diverged = sum(1 for s in scores if not math.isfinite(s))
    k, n = sum(solves), len(scores)
    if rule == MEAN:
        return Verdict(mean, std, n, k, diverged, meets(mean, bar, direction), False, rule)
    near = [
        interval is not None and math.isfinite(score) and holds(interval, bar)
        for score, interval in zip(scores, intervals or [None] * n, strict=True)
    ]
    solved = 2 * k > n
    # one seed near the bar on the verdict's side, flipped, moves the majority across
    flippable = any(
        close and solving == solved for close, solving in zip(near, solves, strict=True)
    )
    near_bar = flippable and (2 * (k - 1) <= n if solved else 2 * (k + 1) > n)
    return Verdict(mean, std, n, k, diverged, solved, near_bar, rule)


def cell_label(task: str, length: int, family: str) -> str:
    """How a cell is named to people: `adding L=100 gru` (its runs, progress, tables)."""
    return f"{task} L={length} {family}"


@dataclass
class CellResult:
    """What a cell's parent run holds, read back (the report's and verify's view of a cell)."""

    run_id: str
    status: str  # the MLflow run status
    start_time: int
    key: str
    task: str
    length: int
    family: str
    metric: str
    direction: str
    seed: int
    extra_seeds: list[int]
    budget: Budget
    state: CellState
    baseline: float
    solved_bar: float
    seed_scores: dict[int, float]  # nan for a seed that diverged
    longer: dict[int, float]  # test score of the search seed's best model at longer lengths
    metrics: dict[str, float]
    tags: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    longer_by_seed: dict[int, dict[int, float]] = field(default_factory=dict)  # seed -> L -> score

    @property
    def budget_key(self) -> str:
        return self.budget.key(self.seed, self.extra_seeds)

    @property
    def label(self) -> str:
        return cell_label(self.task, self.length, self.family)

    @property
    def added_seeds(self) -> list[int]:
        """The seeds a split vote added (ADDED_SEEDS)."""
        return [int(s) for s in self.tags.get(ADDED_SEEDS, "").split(",") if s]

    @property
    def seeds(self) -> list[int]:
        """Every seed of the cell: the search's, its extra seeds, those a split vote added."""
        return [self.seed, *self.extra_seeds, *self.added_seeds]

    @property
    def rule(self) -> str:
        """How the cell is judged: MAJORITY, or MEAN for a cell stored before that rule."""
        return self.tags.get(VERDICT_RULE, MEAN)

    def interval(self, seed: int, length: int | None = None) -> tuple[float, float] | None:
        """A seed's 95% interval at the cell's length (or a longer one), where stored."""
        low, high = interval_name(None if seed == self.seed else seed, length)
        if low not in self.metrics or high not in self.metrics:
            return None
        return self.metrics[low], self.metrics[high]

    @property
    def verdict(self) -> Verdict:
        seeds = [s for s in self.seeds if s in self.seed_scores]
        return judge(
            [self.seed_scores[s] for s in seeds],
            self.solved_bar,
            self.baseline,
            self.direction,
            [self.interval(s) for s in seeds],
            self.rule,
        )

    @property
    def test_score(self) -> float:
        return self.seed_scores.get(self.seed, math.nan)

    @property
    def machine(self) -> str:
        return machine_of(self.tags)

    @property
    def slot(self) -> tuple:
        """What the cell is to a reader: (budget key, task, length, family)."""
        return (self.budget_key, self.task, self.length, self.family)

    @property
    def legacy(self) -> bool:
        """A done cell of schema 0 (without FUSED_OBSERVED): seconds per epoch include
        compiling, the fused-kernel tag was predicted, and no retrain's model was kept (verify
        cannot check it); a diverged or failed cell has nothing of this to be legacy about."""
        return self.state is CellState.DONE and self.tags[SCHEMA] == "0"

    def get(self, name: str) -> float:
        return self.metrics.get(name, math.nan)

    @classmethod
    def from_run(cls, run: StoredRun) -> CellResult | None:
        """The cell a parent run holds; None when it lacks what a cell needs (not a cell)."""
        tags, params = normalise(CELL, run.status, run.tags, run.params)
        metrics = run.metrics
        try:
            seed = int(params[SEED])
            extra = [int(s) for s in json.loads(params[EXTRA_SEEDS])]
            budget = Budget.from_params(params)
            result = cls(
                run_id=run.run_id,
                status=run.status,
                start_time=run.start_time,
                key=tags.get(CELL_KEY, ""),
                task=params[TASK],
                length=int(params[LENGTH]),
                family=params[FAMILY],
                metric=params[METRIC],
                direction=params[DIRECTION],
                seed=seed,
                extra_seeds=extra,
                budget=budget,
                state=(CellState(tags[STATUS]) if run.status == "FINISHED" else CellState.PARTIAL),
                baseline=metrics.get(BASELINE, math.nan),
                solved_bar=metrics.get(SOLVED_BAR, math.nan),
                seed_scores={},
                longer={},
                metrics=dict(metrics),
                tags=dict(tags),
                params=dict(params),
            )
        except (KeyError, ValueError, TypeError):
            return None
        if result.direction not in ("min", "max"):
            return None
        diverged = {int(s) for s in tags.get(DIVERGED_SEEDS, "").split(",") if s}
        retrained = [*extra, *result.added_seeds]
        for name, value in metrics.items():
            scored = score_of(name)
            if scored is None or scored[0] not in (None, *retrained):
                continue
            which, length = seed if scored[0] is None else scored[0], scored[1]
            if length is None:
                result.seed_scores[which] = value
            else:
                result.longer_by_seed.setdefault(which, {})[length] = value
        for s in diverged & set(retrained):
            result.seed_scores.setdefault(s, math.nan)
        result.longer = dict(result.longer_by_seed.get(seed, {}))
        for s in diverged:
            result.longer_by_seed[s] = {length: math.nan for length in result.longer}
        return result

    def out_of_memory_at(self, length: int) -> bool:
        """Whether testing at a longer `length` did not fit in memory (its scores are NaN)."""
        return self.metrics.get(at_length(OUT_OF_MEMORY, length)) == 1.0

    def verdict_at(self, length: int) -> Verdict:
        """The verdict over the seeds at a longer length than trained (its own bar)."""
        seeds = [s for s in self.seeds if length in self.longer_by_seed.get(s, {})]
        bar = self.metrics.get(at_length(SOLVED_BAR, length), self.solved_bar)
        baseline = self.metrics.get(at_length(BASELINE, length), self.baseline)
        return judge(
            [self.longer_by_seed[s][length] for s in seeds],
            bar,
            baseline,
            self.direction,
            [self.interval(s, length) for s in seeds],
            self.rule,
        )


def run_order(run: StoredRun) -> tuple[int, str]:
    """How runs sort, oldest first: by start time, then id."""
    return (run.start_time, run.run_id)


def standing_run(runs: list[StoredRun]) -> StoredRun | None:
    """Of one cell's runs, the run that stands for it: the latest FINISHED one, else the
    latest (unfinished: a rerun resumes it); None when there are none."""
    ordered = sorted(runs, key=run_order)
    finished = [r for r in ordered if r.status == "FINISHED"]
    return (finished or ordered or [None])[-1]


def standing_cells(runs: list[StoredRun]) -> tuple[list[tuple[CellResult, int]], int]:
    """What a reader shows of `runs`: for each (budget, task, length, family), the finished
    cell run standing for it and how many older finished runs of it it supersedes, oldest
    first; and how many finished cell runs lack what a cell needs (left out)."""
    groups: dict[tuple, list[StoredRun]] = {}
    cells: dict[str, CellResult] = {}
    unreadable = 0
    for run in runs:
        if run.tags.get(KIND) != CELL or run.status != "FINISHED":
            continue
        cell = CellResult.from_run(run)
        if cell is None:
            unreadable += 1
            continue
        cells[run.run_id] = cell
        groups.setdefault(cell.slot, []).append(run)
    chosen = [(cells[standing_run(group).run_id], len(group) - 1) for group in groups.values()]
    return sorted(chosen, key=lambda pair: (pair[0].start_time, pair[0].run_id)), unreadable


# -- what older versions wrote ----------------------------------------------------------
OLD_STATUS = {
    TRIAL: {"error": Outcome.FAILED, "lost": Outcome.KILLED, "interrupted": Outcome.KILLED},
    CELL: {"finished": CellState.DONE, "all trials diverged or failed": CellState.DIVERGED},
}
PARAMS_ADDED = {CELL: {SEED: "0", EXTRA_SEEDS: "[]"}, FRONTIER: {SEED: "0", SEEDS: "1"}}
"""Params added after the first runs: the value the runs before them used."""


def normalise(
    kind: str, run_status: str, tags: dict[str, str], params: dict[str, str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """The tags and params of a `kind` run as this schema names them, whatever version of the
    harness wrote it (copies: a store is never rewritten). Every reader reads through it.

    A status in older words in today's (OLD_STATUS); a finished cell's state as recorded, done
    when unrecorded or unknown; a cell's SCHEMA as
    "0" (without FUSED_OBSERVED) or "1" (without the tag); the params
    added since (PARAMS_ADDED) at the value older runs used."""
    tags, params = dict(tags), {**PARAMS_ADDED.get(kind, {}), **(params or {})}
    status = tags.get(STATUS)
    if status in OLD_STATUS.get(kind, {}):
        tags[STATUS] = OLD_STATUS[kind][status].value
    if kind == CELL:
        if run_status == "FINISHED" and tags.get(STATUS) not in CellState._value2member_map_:
            tags[STATUS] = CellState.DONE.value
        tags.setdefault(SCHEMA, "1" if FUSED_OBSERVED in tags else "0")
    return tags, params
