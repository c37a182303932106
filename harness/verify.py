"""`harness verify`: recompute every number the report would show from the stored models.

For each cell the report shows (harness/report/read.py's rule), verify downloads its
model artifacts (the search's best model and each extra seed's retrain), rebuilds
the test split from the task's generator with the recorded seed and sizes (never
from the data cache or tuner folders), recomputes the test scores, the longer-length
scores and the per-seed scores, then the verdict over the seeds, and compares each
with the stored metric. It never trains.

Tolerance: stored and recomputed agree when |stored - recomputed| <= 1e-6 + 1e-4 x
|stored|. A recomputation on the backend and device that stored the number gives it
back to float rounding; on another device a prediction that flips shows as a
mismatch, named like any other.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.results import CellResult, CellState, judge
from harness.tracking import Tracker

ABSOLUTE, RELATIVE = 1e-6, 1e-4


@dataclass(frozen=True)
class Check:
    """One stored number against its recomputation (`recomputed` nan: could not be)."""

    run_id: str
    cell: str
    metric: str
    stored: float
    recomputed: float
    note: str = ""

    @property
    def ok(self) -> bool:
        if self.note:
            return False
        if math.isnan(self.stored) and math.isnan(self.recomputed):
            return True
        return abs(self.stored - self.recomputed) <= ABSOLUTE + RELATIVE * abs(self.stored)


class Artifacts:
    """A cell run's model artifacts, downloaded once into a temporary folder."""

    def __init__(self, tracker: Tracker, run_id: str, folder: Path):
        self.tracker, self.run_id, self.folder = tracker, run_id, folder
        self.names = {a.path for a in tracker.client.list_artifacts(run_id)}

    def model(self, name: str):
        import keras

        import search_spaces.layers  # noqa: F401  (registers the custom objects)

        if name not in self.names:
            return None
        path = self.tracker.client.download_artifacts(self.run_id, name, str(self.folder))
        with warnings.catch_warnings():  # no optimizer state is needed to predict
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            return keras.saving.load_model(path, compile=False)


def check_cell(tracker: Tracker, cell: CellResult) -> list[Check]:
    """Every stored score of one cell against its recomputation from the stored models."""
    from harness.evaluation import model_file, test_scores
    from tasks import get_task

    label = f"{cell.task} L={cell.length} {cell.family}"
    checks: list[Check] = []

    def compare(metric: str, recomputed: float, note: str = "") -> None:
        stored = cell.metrics.get(metric, math.nan)
        checks.append(Check(cell.run_id, label, metric, stored, recomputed, note))

    if cell.state is not CellState.DONE:
        return checks  # no model was trained: nothing was scored
    if "code" in cell.params:  # your own task or family: import it from where it was
        changed = own_code_changed(cell)
        if changed:
            compare("test_score", math.nan, changed)
            return checks
    task = get_task(cell.task)
    batch, n_test = int(cell.budget["batch_size"]), int(cell.budget["n_test"])
    x, y = task.generate(n_test, cell.length, cell.seed, "test")
    recomputed_seeds: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stored = Artifacts(tracker, cell.run_id, Path(tmp))
        best = stored.model(model_file())
        if best is None:
            compare("test_score", math.nan, f"artifact {model_file()} is missing")
            return checks
        scores = test_scores(task, best, x, y, batch)
        compare("test_score", scores[task.metric.name])
        for name, value in sorted(scores.items()):
            compare(f"test_{name}", value)
        recomputed_seeds[cell.seed] = scores[task.metric.name]
        for length in sorted(cell.longer):
            longer = test_scores(
                task, best, *task.generate(n_test, length, cell.seed, "test"), batch
            )
            compare(f"test_score_len_{length}", longer[task.metric.name])
        for seed in cell.extra_seeds:
            model = stored.model(model_file(seed))
            diverged = seed in cell.seed_scores and math.isnan(cell.seed_scores[seed])
            if model is None:
                if diverged:
                    recomputed_seeds[seed] = math.nan
                    continue
                compare(
                    f"test_score_seed_{seed}", math.nan, f"artifact {model_file(seed)} is missing"
                )
                continue
            score = test_scores(task, model, x, y, batch)[task.metric.name]
            compare(f"test_score_seed_{seed}", score)
            recomputed_seeds[seed] = score
            for length in sorted(cell.longer_by_seed.get(seed, {})):
                data = task.generate(n_test, length, cell.seed, "test")
                value = test_scores(task, model, *data, batch)[task.metric.name]
                compare(f"test_score_seed_{seed}_len_{length}", value)
    if len(recomputed_seeds) == 1 + len(cell.extra_seeds):
        seeds = [recomputed_seeds[s] for s in [cell.seed, *cell.extra_seeds]]
        verdict = judge(seeds, cell.solved_bar, cell.baseline, cell.direction)
        compare("seed_mean", verdict.mean)
        compare("seeds_solved", verdict.seeds_solved)
        compare("solved", float(verdict.solved))
    return checks


def own_code_changed(cell: CellResult) -> str:
    """Why a cell's own task or family cannot be checked (its source changed or is gone)."""
    import json
    import sys

    from harness.errors import USER_ERRORS
    from harness.suites import plugin_code

    for root in json.loads(cell.params.get("code_roots", "[]")):
        if root not in sys.path:
            sys.path.append(root)
    try:
        now = plugin_code(cell.task, cell.family)
    except USER_ERRORS as error:
        return f"its own task or family cannot be loaded: {error}"
    if now != cell.params["code"]:
        return f"its own task or family changed since the run (source {now}, run {cell.params['code']})"
    return ""


def verify(
    tracker: Tracker, experiment: str, progress: Callable[[str], None] = lambda line: None
) -> list[Check]:
    """Check every cell the report would show for `experiment`."""
    from harness.report.read import read_store

    checks = []
    for cell in read_store(tracker, experiment, progress).cells:
        progress(f"verifying {cell.task} L={cell.length} {cell.family} (run {cell.run_id[:8]})")
        if cell.legacy:
            checks.append(
                Check(
                    cell.run_id,
                    f"{cell.task} L={cell.length} {cell.family}",
                    "test_score",
                    cell.test_score,
                    math.nan,
                    "recorded before verify existed: no models to recompute from",
                )
            )
            continue
        checks += check_cell(tracker, cell)
    return checks
