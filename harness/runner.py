"""Runs cells: one Keras Tuner search per (task, length, family), tracked in MLflow, resumable.

A cell whose parent run is FINISHED is skipped; an unfinished one is reopened
and its tuner reloads the completed trials from `WORKDIR/tuners/<cell key>`.
The store decides: a cell it has no run of (a new store, say) starts afresh,
over any tuner state left in the working directory.
In a distributed search (harness/distributed.py) the chief creates the parent
runs, serves each cell's oracle and evaluates; a worker only runs trials.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from harness import __version__, backend, data, distributed, faults, interrupts
from harness.distributed import Cluster
from harness.suites import Cell, Suite
from harness.tracking import CELL_KEY, KIND, TRIAL_ID, StoreUnavailable, Tracker

STATUS = "harness.status"
REPO = Path(__file__).resolve().parent.parent


class Progress:
    """Receives what the runner is doing; the CLI's reporter draws it. No-op by default."""

    def suite_start(self, suite: Suite, total: int) -> None: ...
    def cell_start(self, index: int, cell: Cell) -> None: ...
    def trial(self, event: str, **info) -> None: ...
    def cell_end(self, index: int, cell: Cell, outcome: CellOutcome) -> None: ...


@dataclass
class CellOutcome:
    """The headline numbers of a cell, for the progress display and the summary table."""

    key: str
    state: str  # "done", "skipped" (finished before), "diverged" (no trial trained),
    # "searched" (a worker's share of a distributed search)
    test_score: float = float("nan")
    solved: bool = False
    trials: int = 0
    seconds: float = 0.0


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment_tags() -> dict[str, str]:
    versions = backend.versions()
    tags = {
        "harness.version": __version__,
        "harness.backend": versions["backend"],
        "harness.keras": versions["keras"],
        "harness.keras_tuner": versions["keras_tuner"],
        "harness.framework": versions["framework"],
        "harness.device": backend.device(),
    }
    commit = git_commit()
    if commit:
        tags["harness.git_commit"] = commit
    return tags


def cell_params(cell: Cell, task) -> dict[str, str]:
    params = {
        "task": cell.task,
        "length": cell.length,
        "family": cell.family,
        "seed": cell.seed,
        "metric": task.metric.name,
        "direction": task.metric.direction,
        "extra_seeds": list(cell.extra_seeds),
        "eval_lengths": list(cell.eval_lengths),
    }
    params.update({f"budget.{k}": v for k, v in cell.as_dict()["budget"].items()})
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in params.items()}


class Runner:
    """Runs the cells of a suite against one MLflow store and one working directory."""

    def __init__(
        self,
        tracker: Tracker,
        workdir: Path,
        progress: Progress | None = None,
        cluster: Cluster | None = None,
    ):
        self.tracker, self.workdir = tracker, workdir
        self.progress = progress or Progress()
        self.cluster = cluster

    def run(self, suite: Suite, cells: list[Cell] | None = None) -> list[CellOutcome]:
        cells = list(suite.cells if cells is None else cells)
        worker = self.cluster is not None and not self.cluster.is_chief
        if self.cluster is not None:
            distributed.configure(self.cluster)
        experiment_id = None if worker else self.tracker.experiment_id(suite.name)
        self.progress.suite_start(suite, len(cells))
        outcomes = []
        for index, cell in enumerate(cells):
            interrupts.check()
            self.progress.cell_start(index, cell)
            if worker:
                outcome = self.run_worker_cell(suite.name, cell)
            else:
                outcome = self.run_cell(experiment_id, cell)
            self.progress.cell_end(index, cell, outcome)
            outcomes.append(outcome)
        return outcomes

    def run_cell(self, experiment_id: str, cell: Cell) -> CellOutcome:
        existing = self.tracker.cell_run(experiment_id, cell.key)
        if existing is not None and existing.info.status == "FINISHED":
            metrics = existing.data.metrics
            return CellOutcome(
                cell.key,
                "skipped",
                metrics.get("test_score", float("nan")),
                bool(metrics.get("solved", 0)),
                int(metrics.get("trials_completed", 0)),
            )
        if existing is not None:
            run_id = existing.info.run_id
            self.tracker.reopen(run_id)
            earlier_seconds = existing.data.metrics.get("search_seconds", 0.0)
        else:
            shutil.rmtree(self._tuner_dir(cell), ignore_errors=True)  # trials nobody recorded
            tags = {CELL_KEY: cell.key, KIND: "cell", **environment_tags()}
            run_id = self.tracker.start_run(
                experiment_id, f"{cell.task} L={cell.length} {cell.family}", tags
            )
            from tasks import get_task

            self.tracker.log(run_id, params=cell_params(cell, get_task(cell.task)))
            earlier_seconds = 0.0
        try:
            return self._search_and_evaluate(experiment_id, run_id, cell, earlier_seconds)
        except StoreUnavailable:  # nothing more can be written; a rerun resumes
            raise
        except BaseException:
            self.tracker.log(run_id, tags={STATUS: "interrupted"})
            self.tracker.finish(run_id, "KILLED")
            raise

    def run_worker_cell(self, experiment: str, cell: Cell) -> CellOutcome:
        """A worker's share of a cell: trials from the chief until it has none left."""
        label = f"{cell.task} L={cell.length} {cell.family}"
        parent = distributed.wait_for_cell(self.tracker, experiment, cell.key, label)
        if parent is None:
            return CellOutcome(cell.key, "skipped")
        tuner, splits, _ = self._tuner(parent.info.experiment_id, parent.info.run_id, cell)
        started = time.perf_counter()
        with distributed.Heartbeat(tuner):
            self._search(tuner, cell, *splits[:2])
        seconds = time.perf_counter() - started
        return CellOutcome(cell.key, "searched", trials=len(tuner.records), seconds=seconds)

    def _tuner_dir(self, cell: Cell) -> Path:
        return self.workdir / "tuners" / cell.key

    def _tuner(self, experiment_id, run_id, cell: Cell):
        """The cell's tracked tuner, its (train, val, test) splits and its hypermodel."""
        import keras

        from harness.tuning import make_tuner
        from search_spaces import get_space
        from tasks import get_task

        task, budget = get_task(cell.task), cell.budget
        cache = self.workdir / "cache"
        splits = tuple(
            data.split(task, cell.length, n, cell.seed, name, cache)
            for name, n in (
                ("train", budget.n_train),
                ("val", budget.n_val),
                ("test", budget.n_test),
            )
        )
        hypermodel = get_space(cell.family, task)
        keras.utils.set_random_seed(cell.seed)
        tuner = make_tuner(
            budget.tuner,
            hypermodel,
            task,
            cell.length,
            budget.max_trials,
            budget.epochs,
            budget.executions_per_trial,
            cell.seed,
            str(self._tuner_dir(cell).parent),
            cell.key,
            tracker=self.tracker,
            experiment_id=experiment_id,
            parent_run_id=run_id,
            on_trial=self.progress.trial,
        )
        return tuner, splits, hypermodel

    @staticmethod
    def _search(tuner, cell: Cell, train, val) -> None:
        tuner.search(
            *train,
            validation_data=val,
            epochs=cell.budget.epochs,
            batch_size=cell.budget.batch_size,
            verbose=0,
        )

    def _serve(self, tuner, experiment_id: str, run_id: str) -> None:
        """The chief's search: serve the oracle to the workers, closing lost trials' runs."""

        def lost(event: distributed.Lost) -> None:
            for run in self.tracker.trial_runs(experiment_id, run_id):
                tags = run.data.tags
                if tags.get(TRIAL_ID) == event.trial_id and run.info.status == "RUNNING":
                    status = "error" if event.failed else "lost"
                    self.tracker.log(
                        run.info.run_id, tags={STATUS: status, "harness.reason": event.reason}
                    )
                    self.tracker.finish(run.info.run_id, "FAILED" if event.failed else "KILLED")
            self.progress.trial(
                "end",
                trial_id=event.trial_id,
                status="failed" if event.failed else "re-queued",
                reason=event.reason,
            )

        tuner.oracle.verbose = 0
        tuner.save()
        self.tracker.log(run_id, tags={distributed.PHASE: "search"})
        distributed.serve(tuner.oracle, self.cluster, lost)
        self.tracker.log(run_id, tags={distributed.PHASE: "evaluation"})

    def _search_and_evaluate(self, experiment_id, run_id, cell: Cell, earlier_seconds: float):
        from tasks import get_task

        task = get_task(cell.task)
        tuner, (train, val, test), hypermodel = self._tuner(experiment_id, run_id, cell)
        started = time.perf_counter()
        if self.cluster is not None:
            self._serve(tuner, experiment_id, run_id)
        else:
            self._search(tuner, cell, train, val)
        search_seconds = earlier_seconds + time.perf_counter() - started

        trial_runs = self.tracker.trial_runs(experiment_id, run_id)
        states = [r.data.tags.get(STATUS) for r in trial_runs]
        metrics = {
            "search_seconds": search_seconds,
            "trials_completed": states.count("finished") + states.count("diverged"),
            "trials_diverged": states.count("diverged"),
            "trials_failed": states.count("error"),
        }
        best_trial = next(iter(tuner.oracle.get_best_trials(1)), None)
        if best_trial is None or states.count("finished") == 0:
            metrics.update(
                solved=0,
                baseline=task.baseline(cell.length),
                solved_bar=task.solved_bar(cell.length),
            )
            self.tracker.log(
                run_id, metrics=metrics, tags={STATUS: "all trials diverged or failed"}
            )
            self.tracker.finish(run_id, "FINISHED")
            return CellOutcome(
                cell.key, "diverged", trials=metrics["trials_completed"], seconds=search_seconds
            )

        faults.point("evaluation")
        best_run = next(
            r for r in trial_runs if r.data.tags.get("harness.trial_id") == best_trial.trial_id
        )
        with warnings.catch_warnings():  # the checkpoint holds weights only, not optimizer state
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model = tuner.get_best_models(1)[0]
        hp = best_trial.hyperparameters
        metrics.update(self._evaluate(task, cell, model, hp, hypermodel, train, val, test))
        metrics["best_val_score"] = float(best_trial.score)
        metrics["parameters"] = model.count_params()
        for name in ("seconds_per_epoch", "epochs_to_solve"):
            if name in best_run.data.metrics:
                metrics[name] = best_run.data.metrics[name]
        tags = {
            "harness.fused_rnn_kernel": backend.fused_rnn_kernel(model),
            "harness.best_trial": best_trial.trial_id,
            STATUS: "finished",
        }
        self.tracker.log(run_id, metrics=metrics, tags=tags)
        self._log_artifacts(run_id, tuner, model, hp)
        self.tracker.finish(run_id, "FINISHED")
        return CellOutcome(
            cell.key,
            "done",
            metrics["test_score"],
            bool(metrics["solved"]),
            metrics["trials_completed"],
            search_seconds,
        )

    def _evaluate(self, task, cell: Cell, model, hp, hypermodel, train, val, test) -> dict:
        interrupts.check()
        from harness import evaluation

        budget, cache = cell.budget, self.workdir / "cache"
        metrics = evaluation.test_scores(task, model, *test, budget.batch_size)
        score = metrics[f"test_{task.metric.name}"]
        metrics["test_score"] = score
        metrics["solved"] = int(task.is_solved(score, cell.length))
        metrics["baseline"] = task.baseline(cell.length)
        metrics["solved_bar"] = task.solved_bar(cell.length)
        for length in cell.eval_lengths:
            longer = data.split(task, length, budget.n_test, cell.seed, "test", cache)
            scores = evaluation.test_scores(task, model, *longer, budget.batch_size)
            metrics[f"test_score_len_{length}"] = scores[f"test_{task.metric.name}"]
        seed_scores = [score]
        for seed in cell.extra_seeds:
            seed_score, _ = evaluation.retrain(
                hypermodel,
                hp,
                task,
                cell.length,
                seed,
                train,
                val,
                test,
                budget.epochs,
                budget.batch_size,
            )
            metrics[f"test_score_seed_{seed}"] = seed_score
            seed_scores.append(seed_score)
        metrics["seed_mean"], metrics["seed_std"] = evaluation.spread(seed_scores)
        metrics["seed_count"] = len(seed_scores)
        return metrics

    def _log_artifacts(self, run_id, tuner, model, hp) -> None:
        trials = [
            {
                "trial_id": t.trial_id,
                "status": t.status,
                "score": t.score,
                "hyperparameters": t.hyperparameters.values,
            }
            for t in tuner.oracle.trials.values()
        ]
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "best_hyperparameters.json").write_text(json.dumps(hp.values, indent=2))
            (folder / "trials.json").write_text(json.dumps(trials, indent=2, default=str))
            model.save(folder / "best_model.keras")
            for name in ("best_hyperparameters.json", "trials.json", "best_model.keras"):
                self.tracker.log_artifact(run_id, folder / name)
