"""Runs cells: one Keras Tuner search per (task, length, family), tracked in MLflow, resumable.

Each cell goes through five steps: resolve it once (task, space, data, folders),
resume (a FINISHED run of its key is kept; an unfinished one is reopened and its
tuner reloads the completed trials from `WORKDIR/tuners/<cell key>`), search,
evaluate (harness/evaluation.py), record (harness/results.py's names and verdict).
The store decides: a cell it has no run of (a new store, say) starts afresh, over
any tuner state left in the working directory.
In a distributed search (harness/distributed.py) the chief creates the parent
runs, serves each cell's oracle and evaluates; a worker only runs trials.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness import data, distributed, evaluation, faults, interrupts
from harness.distributed import Cluster
from harness.progress import Progress
from harness.results import (
    BASELINE,
    BEST_TRIAL,
    COMPILE_SECONDS,
    DIVERGED_SEEDS,
    FRONTIER_KEY,
    FUSED_OBSERVED,
    PHASE,
    REASON,
    SEED_COUNT,
    SEED_MEAN,
    SEED_STD,
    SEEDS_SOLVED,
    SOLVED,
    SOLVED_BAR,
    STATUS,
    TRIAL_ID,
    CellResult,
    CellState,
    Outcome,
    cell_params,
    cell_tags,
    environment_tags,
    judge,
    planned_trials,
    trial_counts,
)
from harness.suites import Cell, Suite
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

    spec: object
    action: str  # "ran" or "skipped" (finished before)
    result: object = None


@dataclass
class Resolved:
    """A cell resolved once: its task, its family's space, its folders and data."""

    cell: Cell
    task: object
    space: object
    tuner_dir: Path
    cache: Path

    @property
    def label(self) -> str:
        return f"{self.cell.task} L={self.cell.length} {self.cell.family}"

    def split(self, name: str, length: int | None = None):
        n = {"train": self.cell.budget.n_train, "val": self.cell.budget.n_val}.get(
            name, self.cell.budget.n_test
        )
        length = self.cell.length if length is None else length
        return data.split(self.task, length, n, self.cell.seed, name, self.cache)


def resolve(cell: Cell, workdir: Path) -> Resolved:
    from search_spaces import get_space
    from tasks import get_task

    task = get_task(cell.task)
    space = get_space(cell.family, task, cell.budget.params)
    return Resolved(cell, task, space, workdir / "tuners" / cell.key, workdir / "cache")


class Runner:
    """Runs the cells of a suite against one MLflow store and one working directory."""

    def __init__(
        self,
        tracker: Tracker,
        workdir: Path,
        progress: Progress | None = None,
        cluster: Cluster | None = None,
        pool=None,
    ):
        self.tracker, self.workdir = tracker, workdir
        self.progress = progress or Progress()
        self.cluster, self.pool = cluster, pool
        self._chief = threading.Lock()  # one tuner built at a time in a pool's coordinator

    def run(self, suite: Suite, cells=None, frontiers=None):
        """Every cell, then every frontier: (cell outcomes, frontier outcomes)."""
        cells = list(suite.cells if cells is None else cells)
        frontiers = list(suite.frontiers if frontiers is None else frontiers)
        worker = self.cluster is not None and not self.cluster.is_chief
        if self.cluster is not None:
            distributed.configure(self.cluster)
        experiment_id = None if worker else self.tracker.experiment_id(suite.name)
        self.progress.start(f"suite {suite.name}", len(cells) + len(frontiers))
        if self.pool is not None:
            return self._run_side_by_side(experiment_id, cells, frontiers)
        outcomes = []
        for index, cell in enumerate(cells):
            interrupts.check()
            where = f"[{index + 1}/{len(cells)}]"
            if worker:
                outcome = self.run_worker_cell(suite.name, cell)
            else:
                outcome = self.run_cell(experiment_id, cell, where)
            self.progress.unit_done("")
            outcomes.append(outcome)
        return outcomes, [self._frontier_unit(experiment_id, spec) for spec in frontiers]

    def _run_side_by_side(self, experiment_id, cells, frontiers):
        """Cells and frontiers as units, up to the pool's size at once (their order kept)."""

        def cell_unit(index_cell):
            index, cell = index_cell
            outcome = self.run_cell(experiment_id, cell, f"[{index + 1}/{len(cells)}]")
            self.progress.unit_done("")
            return outcome

        with ThreadPoolExecutor(self.pool.size, thread_name_prefix="unit") as units:
            cell_runs = [units.submit(cell_unit, item) for item in enumerate(cells)]
            frontier_runs = [
                units.submit(self._frontier_unit, experiment_id, spec) for spec in frontiers
            ]
            return [f.result() for f in cell_runs], [f.result() for f in frontier_runs]

    def _frontier_unit(self, experiment_id, spec) -> FrontierOutcome:
        """One frontier as a unit of the suite's progress, its bracket on the progress line."""
        outcome = self.run_frontier(experiment_id, spec)
        bracket = outcome.result.bracket.text() if outcome.result else "-"
        self.progress.unit_done(f"{spec.label}: {bracket} ({outcome.action})")
        return outcome

    # -- the five steps -------------------------------------------------------------------
    def run_cell(self, experiment_id: str, cell: Cell, where: str = "") -> CellOutcome:
        self.progress.cell_start(cell, where)
        outcome = self._run_cell(experiment_id, cell)
        self.progress.cell_end(cell, where, outcome)
        return outcome

    def _run_cell(self, experiment_id: str, cell: Cell) -> CellOutcome:
        resolved = resolve(cell, self.workdir)
        finished, run_id, earlier_seconds = self.resume(experiment_id, resolved)
        if finished is not None:
            return CellOutcome(cell, "skipped", finished, int(finished.get("trials_completed")))
        try:
            tuner, search_seconds = self.search(experiment_id, run_id, resolved)
            search_seconds += earlier_seconds
            trials = self.tracker.trial_runs(experiment_id, run_id)
            outcomes = [Outcome.of(r.data.tags, r.info.status) for r in trials]
            state = CellState.of("FINISHED", outcomes)
            with tempfile.TemporaryDirectory() as folder:
                found = None
                if state is CellState.DONE:
                    faults.point("evaluation")
                    found = self.evaluate(resolved, tuner, Path(folder))
                    self._log_artifacts(run_id, tuner, found, Path(folder))
                self.record(run_id, resolved, state, trials, search_seconds, found)
        except StoreUnavailable:  # nothing more can be written; a rerun resumes
            raise
        except BaseException:
            self.tracker.log(run_id, tags={STATUS: CellState.PARTIAL.value, REASON: "interrupted"})
            self.tracker.finish(run_id, "KILLED")
            raise
        result = CellResult.from_run(self.tracker.client.get_run(run_id))
        return CellOutcome(cell, "ran", result, trial_counts(outcomes)["trials_completed"])

    def resume(self, experiment_id: str, resolved: Resolved):
        """(the finished result, or None; the run to continue; its earlier search seconds)."""
        cell = resolved.cell
        run = self.tracker.cell_run(experiment_id, cell.key)
        if run is not None and run.info.status == "FINISHED":
            return CellResult.from_run(run), None, 0.0
        if run is not None:
            self.tracker.reopen(run.info.run_id)
            return None, run.info.run_id, run.data.metrics.get("search_seconds", 0.0)
        shutil.rmtree(resolved.tuner_dir, ignore_errors=True)  # trials nobody recorded
        run_id = self.tracker.start_run(experiment_id, resolved.label, cell_tags(cell))
        self.tracker.log(run_id, params=cell_params(cell, resolved.task))
        return None, run_id, 0.0

    def search(self, experiment_id: str, run_id: str, resolved: Resolved):
        """Run (or, as a chief, serve) the cell's search: (the tuner, seconds it took)."""
        serving = self.cluster is not None or self.pool is not None
        with self._chief:
            tuner = self._tuner(experiment_id, run_id, resolved, declare_only=serving)
        started = time.perf_counter()
        if self.pool is not None:
            self._serve_pool(tuner, experiment_id, run_id, resolved)
        elif self.cluster is not None:
            self._serve(tuner, experiment_id, run_id)
        else:
            self._search(tuner, resolved)
        return tuner, time.perf_counter() - started

    def _serve_pool(self, tuner, experiment_id: str, run_id: str, resolved: Resolved) -> None:
        """Serve the cell's oracle on 127.0.0.1 to the pool's workers (harness/pool.py)."""
        from harness.pool import HOST, WORKER_TIMEOUT_S, Demand

        cell = resolved.cell
        port = distributed.free_port(HOST)
        job = {"cell": cell, "experiment_id": experiment_id, "run_id": run_id,
               "address": f"{HOST}:{port}"}  # fmt: skip
        planned = planned_trials(cell.budget.tuner, cell.budget.max_trials, cell.budget.epochs)
        demand = Demand(resolved.label, job, tuner.oracle, planned)
        self.pool.search(demand)
        try:
            self._serve(
                tuner,
                experiment_id,
                run_id,
                Cluster(distributed.CHIEF, HOST, port, WORKER_TIMEOUT_S),
                on_end=lambda: self.pool.trial_ended(demand),
            )
        finally:
            self.pool.searched(demand)

    def job(self, job: dict, worker_id: str) -> object:
        """A pool worker's job (harness/pool.py): join a cell's search, evaluate, retrain."""
        resolved = resolve(job["cell"], self.workdir)
        self.progress.label = resolved.label
        if job["kind"] == "search":
            host, _, port = job["address"].rpartition(":")
            distributed.configure(Cluster(worker_id, host, int(port)))
            tuner = self._tuner(job["experiment_id"], job["run_id"], resolved)
            with distributed.Heartbeat(tuner):
                self._search(tuner, resolved)
            return len(tuner.records)
        distributed.unconfigure()
        folder = Path(job["folder"])
        if job["kind"] == "evaluate":  # the chief's tuner, reloaded from its folder (no server)
            os.environ[distributed.VARIABLES[0]] = distributed.CHIEF
            tuner = self._tuner(None, None, resolved)
            return self._best(resolved, tuner, folder, retrain=False)
        return evaluation.retrain_seed(resolved, job["values"], job["seed"], folder)

    def evaluate(self, resolved: Resolved, tuner, folder: Path) -> evaluation.Evaluation:
        """The best trial's model and the retrains of its hyperparameters, scored and saved;
        with a pool, each a job of its own (the retrains side by side)."""
        interrupts.check()
        if self.pool is None:
            return self._best(resolved, tuner, folder, retrain=True)
        cell = resolved.cell
        found = self.pool.run("evaluate", cell=cell, folder=str(folder))
        with ThreadPoolExecutor(max(1, len(cell.extra_seeds))) as seeds:
            retrains = {
                seed: seeds.submit(
                    self.pool.run,
                    "retrain",
                    cell=cell,
                    values=found.values,
                    seed=seed,
                    folder=str(folder),
                )
                for seed in cell.extra_seeds
            }
            for seed, retrain in retrains.items():
                evaluation.add_seed(found, seed, *retrain.result())
        return found

    def _best(self, resolved: Resolved, tuner, folder: Path, retrain: bool):
        best_trial = tuner.oracle.get_best_trials(1)[0]
        tuner.hypermodel.declare_only = False  # a chief's hypermodel builds from here on
        with warnings.catch_warnings():  # the checkpoint holds weights only, not optimizer state
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model = tuner.get_best_models(1)[0]
        values = resolved.space.complete(dict(best_trial.hyperparameters.values))
        score = evaluation.evaluate if retrain else evaluation.score_best
        found = score(resolved, model, values, folder)
        found.best_trial, found.best_val_score = best_trial.trial_id, float(best_trial.score)
        return found

    def record(self, run_id, resolved: Resolved, state, trials, search_seconds, found) -> None:
        """Write the cell's numbers and verdict to its parent run and finish it."""
        task, cell = resolved.task, resolved.cell
        metrics = {
            "search_seconds": search_seconds,
            BASELINE: task.baseline(cell.length),
            SOLVED_BAR: task.solved_bar(cell.length),
            **trial_counts([Outcome.of(r.data.tags, r.info.status) for r in trials]),
        }
        tags = {STATUS: state.value}
        if found is not None:
            best_run = next(r for r in trials if r.data.tags.get(TRIAL_ID) == found.best_trial)
            for name in ("seconds_per_epoch", COMPILE_SECONDS, "epochs_to_solve"):
                if name in best_run.data.metrics:
                    metrics[name] = best_run.data.metrics[name]
            metrics.update(found.metrics)
            seeds = [cell.seed, *cell.extra_seeds]
            scores = [found.seed_scores[s] for s in seeds]
            verdict = judge(scores, metrics[SOLVED_BAR], metrics[BASELINE], task.metric.direction)
            metrics.update(
                {
                    SEED_MEAN: verdict.mean,
                    SEED_STD: verdict.std,
                    SEED_COUNT: verdict.seeds,
                    SEEDS_SOLVED: verdict.seeds_solved,
                    SOLVED: int(verdict.solved),
                }
            )
            metrics["best_val_score"] = found.best_val_score
            tags.update({BEST_TRIAL: found.best_trial, FUSED_OBSERVED: found.fused_kernel})
            if found.diverged_seeds:
                tags[DIVERGED_SEEDS] = ",".join(map(str, found.diverged_seeds))
        else:
            metrics[SOLVED] = 0
        self.tracker.log(run_id, metrics=metrics, tags=tags)
        self.tracker.finish(run_id, "FINISHED")

    # -- frontiers ---------------------------------------------------------------------------
    def run_frontier(self, experiment_id: str, spec) -> FrontierOutcome:
        """Probe cells of `spec` as the frontier search asks, recording the frontier run."""
        from harness import frontier

        first = spec.cell(frontier.Ask(spec.min_length, 0, "double"))
        task = resolve(first, self.workdir).task  # a budget out of reach fails before any run
        runs = self.tracker.runs(experiment_id, f"tags.`{FRONTIER_KEY}` = '{spec.key}'")
        runs = sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))
        done = [r for r in runs if r.info.status == "FINISHED"]
        if done:
            return FrontierOutcome(spec, "skipped", frontier.FrontierResult.from_run(done[-1]))
        if runs:
            run_id = runs[-1].info.run_id
            self.tracker.reopen(run_id)
        else:
            tags = {**spec.tags(), **environment_tags()}
            run_id = self.tracker.start_run(experiment_id, spec.label, tags)
            self.tracker.log(run_id, params=spec.params())
        probes = frontier.search(
            spec.min_length, spec.max_length, spec.resolution, task.accepted_length
        )
        steps, ask = [], next(probes)
        try:
            while True:
                interrupts.check()
                outcome = self.run_cell(experiment_id, spec.cell(ask), "[frontier]")
                steps.append(frontier.Step.of(ask, outcome.result))
                frontier.record_step(self.tracker, run_id, steps)
                self.progress.frontier_step(spec, steps[-1])
                ask = probes.send(steps[-1].solved)
        except StopIteration as stop:
            bracket = stop.value
        except BaseException:
            self.tracker.finish(run_id, "KILLED")
            raise
        bracket.steps = steps
        self.tracker.log(run_id, metrics=frontier.bracket_metrics(bracket))
        self.tracker.finish(run_id, "FINISHED")
        found = frontier.FrontierResult.from_run(self.tracker.client.get_run(run_id))
        return FrontierOutcome(spec, "ran", found)

    # -- a distributed search's worker --------------------------------------------------------
    def run_worker_cell(self, experiment: str, cell: Cell) -> CellOutcome:
        """A worker's share of a cell: trials from the chief until it has none left."""
        resolved = resolve(cell, self.workdir)
        parent = distributed.wait_for_cell(self.tracker, experiment, cell.key, resolved.label)
        if parent is None:
            return CellOutcome(cell, "skipped")
        tuner = self._tuner(parent.info.experiment_id, parent.info.run_id, resolved)
        with distributed.Heartbeat(tuner):
            self._search(tuner, resolved)
        return CellOutcome(cell, "searched", trials=len(tuner.records))

    # -- helpers -----------------------------------------------------------------------------
    def _tuner(self, experiment_id, run_id, resolved: Resolved, declare_only: bool = False):
        """The cell's tracked tuner (its hypermodel only declares the space for a chief)."""
        import keras

        from harness.tuning import SpaceHyperModel, make_tuner

        cell, budget = resolved.cell, resolved.cell.budget
        keras.utils.set_random_seed(cell.seed)
        return make_tuner(
            budget.tuner,
            SpaceHyperModel(resolved.space, declare_only),
            resolved.task,
            cell.length,
            budget.max_trials,
            budget.epochs,
            budget.executions_per_trial,
            cell.seed,
            str(resolved.tuner_dir.parent),
            cell.key,
            tracker=self.tracker,
            experiment_id=experiment_id,
            parent_run_id=run_id,
            on_trial=self.progress.trial,
        )

    @staticmethod
    def _search(tuner, resolved: Resolved) -> None:
        try:
            tuner.search(
                *resolved.split("train"),
                validation_data=resolved.split("val"),
                epochs=resolved.cell.budget.epochs,
                batch_size=resolved.cell.budget.batch_size,
                verbose=0,
            )
        except RuntimeError as error:  # Keras Tuner's end of a search whose trials all failed
            if "consecutive failures exceeded" not in str(error):
                raise

    def _serve(self, tuner, experiment_id: str, run_id: str, cluster=None, on_end=None) -> None:
        """The chief's search: serve the oracle to the workers, closing lost trials' runs."""

        def lost(event: distributed.Lost) -> None:
            outcome = Outcome.FAILED if event.failed else Outcome.KILLED
            for run in self.tracker.trial_runs(experiment_id, run_id):
                tags = run.data.tags
                if tags.get(TRIAL_ID) == event.trial_id and run.info.status == "RUNNING":
                    self.tracker.log(
                        run.info.run_id, tags={STATUS: outcome.value, REASON: event.reason}
                    )
                    self.tracker.finish(run.info.run_id, outcome.run_status)
            self.progress.trial(
                "end",
                trial_id=event.trial_id,
                status=outcome.value if event.failed else "re-queued",
                reason=event.reason,
            )

        tuner.oracle.verbose = 0
        tuner.save()
        self.tracker.log(run_id, tags={PHASE: "search"})
        local = cluster is not None
        distributed.serve(tuner.oracle, cluster or self.cluster, lost, local, on_end)
        tuner.save()  # the trials' end, for an evaluation that reloads the tuner elsewhere
        self.tracker.log(run_id, tags={PHASE: "evaluation"})

    def _log_artifacts(self, run_id, tuner, found: evaluation.Evaluation, folder: Path) -> None:
        """The best hyperparameters, the tuner's trials and every scored model."""
        trials = [
            {
                "trial_id": t.trial_id,
                "status": t.status,
                "score": t.score,
                "hyperparameters": t.hyperparameters.values,
            }
            for t in tuner.oracle.trials.values()
        ]
        (folder / "best_hyperparameters.json").write_text(json.dumps(found.values, indent=2))
        (folder / "trials.json").write_text(json.dumps(trials, indent=2, default=str))
        for path in [folder / "best_hyperparameters.json", folder / "trials.json", *found.files]:
            self.tracker.log_artifact(run_id, path)
