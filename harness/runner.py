"""Runs cells: one Keras Tuner search per (task, length, family), tracked in MLflow, resumable.

Each cell goes through five steps: resolve it once (harness/steps.py: task, space,
folders), resume (a FINISHED run of its key is kept; an unfinished one is reopened and
its tuner reloads the completed trials from `WORKDIR/tuners/<cell key>`; runs of it that
a dead process left RUNNING are ended KILLED, harness/liveness.py), search, evaluate
(harness/evaluation.py), record (harness/results.py's names and verdict). The store
decides: a cell it has no run of (a new store, say) starts afresh, over any tuner state
left in the working directory. A frontier (`run_frontier`) runs the cells that
harness/frontier.py's search asks for, each the same way, and records the frontier's run.

How a cell's trials are spread is a strategy passed in: in this process
(harness/steps.py's `InProcess`), a local pool of workers (harness/pool.py's
`LocalPool`) or a cluster's chief (harness/cluster.py's `ClusterChief`). What the run
does is reported through harness/events.py's calls.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness import evaluation, faults, interrupts, liveness, plan, steps
from harness.events import Events
from harness.frontier import FrontierResult
from harness.provenance import cell_params, cell_tags, environment_tags
from harness.results import (
    ADDED_SEEDS,
    BASELINE,
    BEST_TRIAL,
    BEST_VAL_SCORE,
    COMPILE_SECONDS,
    DIVERGED_SEEDS,
    EPOCHS_TO_SOLVE,
    FRONTIER_KEY,
    FUSED_OBSERVED,
    NEAR_BAR,
    REASON,
    SEARCH_SECONDS,
    SECONDS_PER_EPOCH,
    SEED_COUNT,
    SEED_MEAN,
    SEED_STD,
    SEEDS_SOLVED,
    SOLVED,
    SOLVED_BAR,
    STATUS,
    TRIAL_ID,
    TRIALS_COMPLETED,
    CellResult,
    CellState,
    Outcome,
    judge,
    run_order,
    trial_counts,
)
from harness.steps import CellSearch, InProcess, Resolved, resolve
from harness.suites import Cell, FrontierSpec, Suite
from harness.tracking import StoreUnavailable, Tracker


@dataclass
class CellOutcome:
    """How a run of a cell went: what it did, and the result the store now holds."""

    cell: Cell
    action: str  # "ran", "skipped" (finished before), "searched" (a worker's share)
    result: CellResult | None = None
    trials: int = 0

    @property
    def state(self) -> str:
        if self.action != "ran" or self.result is None:
            return self.action
        return self.result.state.value


@dataclass
class FrontierOutcome:
    """How a run of a frontier went, and the frontier the store now holds."""

    spec: FrontierSpec
    action: str  # "ran" or "skipped" (finished before)
    result: FrontierResult | None = None


class Runner:
    """Runs the cells of a suite against one MLflow store and one working directory."""

    def __init__(
        self,
        tracker: Tracker,
        workdir: Path,
        events: Events | None = None,
        spread: steps.Spread | None = None,
    ):
        self.tracker, self.workdir = tracker, workdir
        self.events = events or Events()
        self.spread = spread or InProcess()
        self._building = threading.Lock()  # one tuner built at a time when cells run side by side

    def run(self, suite: Suite, cells=None, frontiers=None):
        """Every cell, then every frontier: (cell outcomes, frontier outcomes)."""
        cells = list(suite.cells if cells is None else cells)
        frontiers = list(suite.frontiers if frontiers is None else frontiers)
        self.spread.start()
        experiment_id = self.tracker.experiment_id(suite.name)
        self.events.start(
            f"suite {suite.name}", plan.units_work(cells, frontiers), self.spread.units
        )
        if self.spread.units > 1:
            return self._run_side_by_side(experiment_id, cells, frontiers)
        outcomes = []
        for index, cell in enumerate(cells):
            interrupts.check()
            outcomes.append(self.run_cell(experiment_id, cell, f"[{index + 1}/{len(cells)}]"))
            self.events.unit_done(cell.key)
        return outcomes, [self._frontier_unit(experiment_id, spec) for spec in frontiers]

    def _run_side_by_side(self, experiment_id, cells, frontiers):
        """Cells and frontiers as units, up to the strategy's units at once (their order kept)."""

        def cell_unit(index_cell):
            index, cell = index_cell
            outcome = self.run_cell(experiment_id, cell, f"[{index + 1}/{len(cells)}]")
            self.events.unit_done(cell.key)
            return outcome

        with ThreadPoolExecutor(self.spread.units, thread_name_prefix="unit") as units:
            cell_runs = [units.submit(cell_unit, item) for item in enumerate(cells)]
            frontier_runs = [
                units.submit(self._frontier_unit, experiment_id, spec) for spec in frontiers
            ]
            return [f.result() for f in cell_runs], [f.result() for f in frontier_runs]

    def _frontier_unit(self, experiment_id: str, spec: FrontierSpec) -> FrontierOutcome:
        """One frontier as a unit of the suite's progress, its bracket on the progress line."""
        outcome = self.run_frontier(experiment_id, spec)
        bracket = outcome.result.bracket.text() if outcome.result else "-"
        self.events.unit_done(spec.key, f"{spec.label}: {bracket} ({outcome.action})")
        return outcome

    # -- the five steps -------------------------------------------------------------------
    def run_cell(
        self, experiment_id: str, cell: Cell, where: str = "", unit: str | None = None
    ) -> CellOutcome:
        """One cell; `unit`, the key of the unit it belongs to, is its own unless given."""
        self.events.cell_start(cell, where, unit or cell.key)
        outcome = self._run_cell(experiment_id, cell)
        self.events.cell_end(cell, where, outcome)
        return outcome

    def _run_cell(self, experiment_id: str, cell: Cell) -> CellOutcome:
        resolved = resolve(cell, self.workdir)
        finished, run_id, earlier_seconds = self.resume(experiment_id, resolved)
        if finished is not None:
            return CellOutcome(cell, "skipped", finished, int(finished.get(TRIALS_COMPLETED)))
        try:
            tuner, search_seconds = self.search(experiment_id, run_id, resolved)
            search_seconds += earlier_seconds
            trials = self.tracker.trial_runs(experiment_id, run_id)
            outcomes = [Outcome.of(r.tags, r.status) for r in trials]
            state = CellState.of("FINISHED", outcomes)
            with tempfile.TemporaryDirectory() as folder:
                evaluated = None
                if state is CellState.DONE:
                    faults.point("evaluation")
                    evaluated = self.evaluate(resolved, tuner, Path(folder))
                    self._log_artifacts(run_id, tuner, evaluated, Path(folder))
                self.record(run_id, resolved, state, trials, search_seconds, evaluated)
        except StoreUnavailable:  # nothing more can be written; a rerun resumes
            raise
        except BaseException:
            self.tracker.log(run_id, tags={STATUS: CellState.PARTIAL.value, REASON: "interrupted"})
            self.tracker.finish(run_id, "KILLED")
            raise
        result = CellResult.from_run(self.tracker.get_run(run_id))
        return CellOutcome(cell, "ran", result, trial_counts(outcomes)[TRIALS_COMPLETED])

    def resume(self, experiment_id: str, resolved: Resolved):
        """(the finished result, or None; the run to continue; its earlier search seconds).

        The trial and retrain runs of the cell's run that a dead process left RUNNING end
        KILLED."""
        cell = resolved.cell
        run = self.tracker.cell_run(experiment_id, cell.key)
        if run is not None:
            children = self.tracker.child_runs(experiment_id, run.run_id)
            liveness.end_dead_runs(self.tracker, children)
        if run is not None and run.status == "FINISHED":
            return CellResult.from_run(run), None, 0.0
        if run is not None:
            self._reopen(run.run_id)
            return None, run.run_id, run.metrics.get(SEARCH_SECONDS, 0.0)
        shutil.rmtree(resolved.tuner_dir, ignore_errors=True)  # trials nobody recorded
        tags = {**cell_tags(cell), **liveness.process_tags()}
        run_id = self.tracker.start_run(experiment_id, resolved.label, tags)
        self.tracker.log(run_id, params=cell_params(cell, resolved.task))
        return None, run_id, 0.0

    def _reopen(self, run_id: str) -> None:
        """Run `run_id` again, in this process."""
        self.tracker.reopen(run_id)
        self.tracker.log(run_id, tags=liveness.process_tags())

    def search(self, experiment_id: str, run_id: str, resolved: Resolved):
        """Run (or, as a chief, serve) the cell's search: (the tuner, seconds it took)."""
        with self._building:
            tuner = steps.build_tuner(
                self.tracker,
                experiment_id,
                run_id,
                resolved,
                self.events.trial,
                declare_only=self.spread.serves,
            )
        started = time.perf_counter()
        job = CellSearch(self.tracker, experiment_id, run_id, resolved, self.events)
        self.spread.search(tuner, job)
        return tuner, time.perf_counter() - started

    def evaluate(self, resolved: Resolved, tuner, folder: Path) -> evaluation.Evaluation:
        """The best trial's model and the retrains of its hyperparameters, scored and saved."""
        interrupts.check()
        return self.spread.evaluate(resolved, tuner, folder)

    def record(self, run_id, resolved: Resolved, state, trials, search_seconds, evaluated) -> None:
        """Write the cell's numbers and verdict to its parent run and finish it."""
        task, cell = resolved.task, resolved.cell
        metrics = {
            SEARCH_SECONDS: search_seconds,
            BASELINE: task.baseline(cell.length),
            SOLVED_BAR: task.solved_bar(cell.length),
            **trial_counts([Outcome.of(r.tags, r.status) for r in trials]),
        }
        tags = {STATUS: state.value}
        if evaluated is not None:
            best_run = next(r for r in trials if r.tags.get(TRIAL_ID) == evaluated.best_trial)
            for name in (SECONDS_PER_EPOCH, COMPILE_SECONDS, EPOCHS_TO_SOLVE):
                if name in best_run.metrics:
                    metrics[name] = best_run.metrics[name]
            metrics.update(evaluated.metrics)
            seeds = [cell.seed, *cell.extra_seeds, *evaluated.added_seeds]
            verdict = judge(
                [evaluated.seed_scores[s] for s in seeds],
                metrics[SOLVED_BAR],
                metrics[BASELINE],
                task.metric.direction,
                [evaluated.intervals.get(s) for s in seeds],
            )
            metrics.update(
                {
                    SEED_MEAN: verdict.mean,
                    SEED_STD: verdict.std,
                    SEED_COUNT: verdict.seeds,
                    SEEDS_SOLVED: verdict.seeds_solved,
                    SOLVED: int(verdict.solved),
                    NEAR_BAR: int(verdict.near_bar),
                }
            )
            metrics[BEST_VAL_SCORE] = evaluated.best_val_score
            tags.update({BEST_TRIAL: evaluated.best_trial, FUSED_OBSERVED: evaluated.fused_kernel})
            if evaluated.added_seeds:
                tags[ADDED_SEEDS] = ",".join(map(str, evaluated.added_seeds))
            if evaluated.diverged_seeds:
                tags[DIVERGED_SEEDS] = ",".join(map(str, evaluated.diverged_seeds))
        else:
            metrics[SOLVED] = 0
        self.tracker.log(run_id, metrics=metrics, tags=tags)
        self.tracker.finish(run_id, "FINISHED")

    # -- frontiers ---------------------------------------------------------------------------
    def run_frontier(self, experiment_id: str, spec: FrontierSpec) -> FrontierOutcome:
        """Probe cells of `spec` as the frontier search asks, recording the frontier run."""
        from harness import frontier

        first = spec.cell(frontier.Ask(spec.min_length, 0, "double"))
        task = resolve(first, self.workdir).task  # a budget out of reach fails before any run
        runs = self.tracker.runs(experiment_id, f"tags.`{FRONTIER_KEY}` = '{spec.key}'")
        runs = sorted(runs, key=run_order)
        done = [r for r in runs if r.status == "FINISHED"]
        if done:
            return FrontierOutcome(spec, "skipped", frontier.FrontierResult.from_run(done[-1]))
        liveness.end_dead_runs(self.tracker, runs[:-1])  # the latest is reopened below
        if runs:
            run_id = runs[-1].run_id
            self._reopen(run_id)
        else:
            tags = {**spec.tags(), **environment_tags(), **liveness.process_tags()}
            run_id = self.tracker.start_run(experiment_id, spec.label, tags)
            self.tracker.log(run_id, params=spec.params())
        asks = frontier.search(
            spec.min_length, spec.max_length, spec.resolution, task.accepted_length, spec.confirms
        )
        steps_so_far, ask = [], next(asks)
        try:
            while True:
                interrupts.check()
                outcome = self.run_cell(experiment_id, spec.cell(ask), "[frontier]", spec.key)
                steps_so_far.append(frontier.Step.of(ask, outcome.result))
                frontier.record_step(self.tracker, run_id, steps_so_far)
                self.events.frontier_step(spec, steps_so_far[-1])
                ask = asks.send(steps_so_far[-1].solved)
        except StopIteration as stop:
            bracket = stop.value
        except BaseException:
            self.tracker.finish(run_id, "KILLED")
            raise
        bracket.steps = steps_so_far
        self.tracker.log(run_id, metrics=frontier.bracket_metrics(bracket))
        self.tracker.finish(run_id, "FINISHED")
        result = frontier.FrontierResult.from_run(self.tracker.get_run(run_id))
        return FrontierOutcome(spec, "ran", result)

    # -- helpers -----------------------------------------------------------------------------
    def _log_artifacts(self, run_id, tuner, evaluated: evaluation.Evaluation, folder: Path) -> None:
        """The best hyperparameters, the tuner's trials and every scored model."""
        from harness import kt_compat

        trials = [
            {
                "trial_id": t.trial_id,
                "status": t.status,
                "score": t.score,
                "hyperparameters": t.hyperparameters.values,
            }
            for t in kt_compat.trials(tuner.oracle)
        ]
        (folder / "best_hyperparameters.json").write_text(json.dumps(evaluated.values, indent=2))
        (folder / "trials.json").write_text(json.dumps(trials, indent=2, default=str))
        for path in [
            folder / "best_hyperparameters.json",
            folder / "trials.json",
            *evaluated.files,
        ]:
            self.tracker.log_artifact(run_id, path)
