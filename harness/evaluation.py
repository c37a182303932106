"""Honest scores for a search's winner: held-out test split, longer lengths, extra seeds.

Each seed's test score carries its 95% interval (harness/intervals.py). When the seeds'
vote is split (some solve, some do not: harness/results.py's `judge`), two more seeds are
trained, once, and the majority of all decides (`tie_seeds`).

Every seed's model is the one of its best validation epoch: Keras Tuner keeps the
search's at its best epoch (its SaveBestEpoch checkpoint), and a retrain restores
its own the same way (harness/callbacks.py's `BestEpoch`). Every scored model is kept,
so `harness verify` can recompute every stored score from the artifacts alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import keras

from harness import backend, liveness
from harness.callbacks import BestEpoch, TrialWatch
from harness.results import (
    BASELINE,
    EVALUATION_MEMORY,
    KIND,
    OUT_OF_MEMORY,
    PARAMETERS,
    PARENT,
    RETRAIN,
    RETRAIN_SEED,
    SOLVED_BAR,
    STATUS,
    TEST_EXAMPLES,
    Outcome,
    at_length,
    interval_name,
    judge,
    score_name,
    task_score_name,
)
from harness.stored import EVALUATION_MEMORY_GB, OutOfMemory, model_file, scored
from tasks.base import Task


def retrain(
    space,
    values: dict,
    task: Task,
    length: int,
    seed: int,
    train,
    val,
    epochs,
    batch,
    on_epoch=None,
    tracker=None,
    run_id=None,
):
    """Train `values` again from `seed`: (the model at its best epoch, or None if it diverged).
    `on_epoch`, `tracker` and `run_id` as TrialWatch takes them (None: nobody is told)."""
    keras.utils.set_random_seed(seed)
    keras.backend.clear_session()
    model = space.model(values)
    watch = TrialWatch(tracker, run_id, task, length, on_epoch)
    model.fit(
        *train,
        validation_data=val,
        epochs=epochs,
        batch_size=batch,
        verbose=0,
        callbacks=[watch, BestEpoch(task)],
    )
    return None if watch.record.diverged else model


@dataclass
class Evaluation:
    """A cell's best model and the retrains of its hyperparameters, scored."""

    values: dict  # the best hyperparameters (a derived width included)
    metrics: dict[str, float]
    seed_scores: dict[int, float]  # nan for a retrain that diverged
    diverged_seeds: list[int]
    files: list[Path]  # every scored model, saved
    fused_kernel: str
    best_trial: str = ""
    best_val_score: float = math.nan
    intervals: dict[int, tuple[float, float]] = field(default_factory=dict)
    added_seeds: list[int] = field(default_factory=list)  # a split vote's two more seeds


def score_best(resolved, model: keras.Model, values: dict, folder: Path) -> Evaluation:
    """Score the search's best `model`: the test split, the longer lengths; saved in `folder`."""
    cell, task = resolved.cell, resolved.task
    batch, primary = cell.budget.batch_size, task.metric.name
    x, y = resolved.split("test")
    scores, interval = scored(task, model, x, y, batch)
    metrics = {task_score_name(name): value for name, value in scores.items()}
    metrics.update(score_metrics(None, None, (scores[primary], interval)))
    metrics[TEST_EXAMPLES] = len(y)
    metrics[PARAMETERS] = model.count_params()
    if cell.eval_lengths:
        metrics[EVALUATION_MEMORY] = EVALUATION_MEMORY_GB
    for length in cell.eval_lengths:
        longer = longer_score(resolved, model, length)
        metrics.update(score_metrics(None, length, longer))
        if longer is None:
            metrics[at_length(OUT_OF_MEMORY, length)] = 1.0
        metrics[at_length(BASELINE, length)] = task.baseline(length)
        metrics[at_length(SOLVED_BAR, length)] = task.solved_bar(length)
    model.save(folder / model_file())
    fused = backend.observe_fused_rnn(model, x[:batch], y[:batch])
    evaluation = Evaluation(
        values, metrics, {cell.seed: scores[primary]}, [], [folder / model_file()], fused
    )
    evaluation.intervals[cell.seed] = interval
    return evaluation


def score_metrics(seed: int | None, length: int | None, result) -> dict[str, float]:
    """The metrics of one test score (the search's model, seed None, or a retrain's; at the
    cell's length, length None, or a longer one) and its interval: `result` is (score,
    interval), or None where the test did not fit in memory (nan, no interval)."""
    if result is None:
        return {score_name(seed, length): math.nan}
    score, interval = result
    return {
        score_name(seed, length): score,
        **dict(zip(interval_name(seed, length), interval, strict=True)),
    }


def longer_score(resolved, model: keras.Model, length: int) -> tuple[float, tuple] | None:
    """The model's primary test score at a longer length (the same seed's test split) and its
    interval, in batches that fit EVALUATION_MEMORY_GB; None where not even one sequence fits."""
    task, batch = resolved.task, resolved.cell.budget.batch_size
    x, y = resolved.split("test", length)
    try:
        scores, interval = scored(task, model, x, y, batch, EVALUATION_MEMORY_GB)
    except OutOfMemory:
        return None
    return scores[task.metric.name], interval


def retrain_seed(resolved, values: dict, seed: int, folder: Path, on_trial=None, runs=None):
    """Retrain `values` with `seed`: (its test score, its saved model, {longer length: (score,
    interval) or None where out of memory}, its score's interval), (nan, None, {}, None) if it diverged. Its epochs go to `on_trial` (harness/events.py's
    `trial`) and, with `runs` (tracker, experiment id, the cell's run id), to a retrain run
    of the cell, as a trial's do."""
    cell, task = resolved.cell, resolved.task
    tracker, run_id = (runs[0], open_retrain_run(*runs, seed)) if runs else (None, None)

    def on_epoch(**epoch):
        if on_trial is not None:
            on_trial("epoch", run=f"retrain seed {seed}", **epoch)

    model = retrain(
        resolved.space,
        values,
        task,
        cell.length,
        seed,
        resolved.split("train"),
        resolved.split("val"),
        cell.budget.epochs,
        cell.budget.batch_size,
        on_epoch,
        tracker,
        run_id,
    )
    if run_id is not None:
        outcome = Outcome.FINISHED if model is not None else Outcome.DIVERGED
        tracker.log(run_id, tags={STATUS: outcome.value})
        tracker.finish(run_id, outcome.run_status)
    if model is None:
        return math.nan, None, {}, None
    x, y = resolved.split("test")
    scores, interval = scored(task, model, x, y, cell.budget.batch_size)
    longer = {length: longer_score(resolved, model, length) for length in cell.eval_lengths}
    model.save(folder / model_file(seed))
    return scores[task.metric.name], folder / model_file(seed), longer, interval


def open_retrain_run(tracker, experiment_id: str, parent: str, seed: int) -> str:
    """A fresh child run of the cell for the retrain of `seed` (one left by an evaluation
    that was cut short is replaced)."""
    for old in tracker.child_runs(experiment_id, parent):
        tags = old.tags
        if tags.get(KIND) == RETRAIN and tags.get(RETRAIN_SEED) == str(seed):
            tracker.delete(old.run_id)
    tags = {PARENT: parent, KIND: RETRAIN, RETRAIN_SEED: str(seed), **liveness.process_tags()}
    return tracker.start_run(experiment_id, f"retrain seed {seed}", tags)


def add_seed(evaluation: Evaluation, seed: int, score: float, file: Path | None, longer, interval):
    """Fold one retrain into a cell's evaluation (a diverged one scores nan, saves nothing)."""
    evaluation.seed_scores[seed] = score
    if file is None:
        evaluation.diverged_seeds.append(seed)
        return
    evaluation.metrics.update(score_metrics(seed, None, (score, interval)))
    evaluation.intervals[seed] = interval
    for length, value in longer.items():
        evaluation.metrics.update(score_metrics(seed, length, value))
    evaluation.files.append(file)


def tie_seeds(resolved, evaluation: Evaluation) -> tuple[int, ...]:
    """The two seeds a split vote adds (the next after the cell's last), once; () when the
    vote is unanimous or seeds were added already."""
    cell, task = resolved.cell, resolved.task
    seeds = [cell.seed, *cell.extra_seeds]
    verdict = judge(
        [evaluation.seed_scores[s] for s in seeds],
        task.solved_bar(cell.length),
        task.baseline(cell.length),
        task.metric.direction,
    )
    if evaluation.added_seeds or not verdict.split:
        return ()
    return (max(seeds) + 1, max(seeds) + 2)


def settle(resolved, evaluation: Evaluation, retrain_all) -> Evaluation:
    """Retrain each extra seed, then the two seeds a split vote adds: `retrain_all(seeds)`
    returns {seed: what `retrain_seed` returns} (one after another, or side by side)."""
    for seed, result in retrain_all(resolved.cell.extra_seeds).items():
        add_seed(evaluation, seed, *result)
    added = tie_seeds(resolved, evaluation)
    for seed, result in retrain_all(added).items():
        add_seed(evaluation, seed, *result)
    evaluation.added_seeds = list(added)
    return evaluation


def evaluate(
    resolved, model: keras.Model, values: dict, folder: Path, on_trial=None, runs=None
) -> Evaluation:
    """Score the search's best `model` and retrain `values` with each extra seed (and the
    split vote's), in turn (`on_trial` and `runs` as `retrain_seed` takes them)."""
    evaluation = score_best(resolved, model, values, folder)

    def retrain_all(seeds):
        return {s: retrain_seed(resolved, values, s, folder, on_trial, runs) for s in seeds}

    return settle(resolved, evaluation, retrain_all)
