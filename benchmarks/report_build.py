"""Report build time for synthetic MLflow stores of 100 and 1,000 runs, and the ratio.

Each store is a temporary SQLite file written through MlflowClient with the
structure `harness run` leaves: per cell one parent run (params, tags, metrics)
and 9 trial child runs (hyperparameters, 5 epochs of metrics by step, summary
metrics, start and end times), all under one budget. Both stores have the same
2 tasks and 5 families, so both reports draw the same figures (4 per task and the
hindsight one); the larger store has 10 lengths per task instead of 1, so 10x the
cells and runs. The target: the 1,000-run report within 5 s on the 2-core machine.

Prints, per store: the time to read it as `harness report` does (sqlite3 alone,
tracking.SqliteSnapshot) beside the baseline, reading it through MlflowClient; to
build the whole report in-process from that reader (best of --repeats; figures
drawn on every core); and `harness report` end to end in a fresh process
(start-up included); then the ratios 1,000 / 100 and the 1,000-run verdict.

    .venv/bin/python benchmarks/report_build.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.budget import Budget  # noqa: E402
from harness.report import build  # noqa: E402
from harness.report.read import read_store  # noqa: E402
from harness.tracking import open_for_reading, open_store  # noqa: E402

EXPERIMENT = "bench"
TASKS = {"adding": ("mse", "min"), "first_token": ("accuracy", "max")}
FAMILIES = ("simple_rnn", "lstm", "gru", "bilstm", "bigru")
TRIALS, EPOCHS = 9, 5
TARGET = 5.0  # seconds for `harness report` on the 1,000-run store, on the 2-core machine
MACHINE = {
    "harness.device": "synthetic",
    "harness.backend": "jax",
    "harness.framework": "jax 0.0",
    "harness.keras": "3.0",
}
SIZES = {100: (100,), 1000: (50, 100, 200, 300, 400, 500, 600, 700, 800, 1000)}


def make_store(folder: Path, lengths: tuple[int, ...], seed: int = 0) -> int:
    """A store with one cell per task x length x family; returns the number of runs."""
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    client = MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.create_experiment(EXPERIMENT)
    rng = np.random.default_rng(seed)
    clock = 1_700_000_000_000
    cells = [(t, f, L) for t in TASKS for f in FAMILIES for L in lengths]
    for task, family, length in cells:
        make_cell(client, experiment, rng, task, family, length, clock)
        clock += TRIALS * 4000 + 1000
    return len(cells) * (1 + TRIALS)


def make_cell(client, experiment, rng, task, family, length, clock) -> None:
    """One parent run and its trials, as `harness run` leaves them."""
    from mlflow.entities import Metric, Param, RunTag

    metric, direction = TASKS[task]
    budget = {"tuner": "random", "max_trials": TRIALS, "epochs": EPOCHS, "batch_size": 64,
              "n_train": 4096, "n_val": 1024, "n_test": 1024, "executions_per_trial": 1}  # fmt: skip
    tags = {
        "harness.kind": "cell",
        "harness.cell_key": f"{task}-L{length}-{family}",
        "harness.budget_key": Budget(**budget).key(0, [1]),
        "harness.fused_rnn_kernel_observed": "n/a",
        **MACHINE,
    }
    parent = client.create_run(experiment, start_time=clock, tags=tags).info.run_id
    scores = [
        make_trial(
            client, experiment, rng, parent, trial, metric, direction, length, clock + trial * 4000
        )
        for trial in range(TRIALS)
    ]
    best = min(scores) if direction == "min" else max(scores)
    baseline, bar = (0.1667, 0.01) if direction == "min" else (0.5, 0.99)
    params = {
        "task": task,
        "length": length,
        "family": family,
        "seed": 0,
        "metric": metric,
        "direction": direction,
        "extra_seeds": "[1]",
        "eval_lengths": f"[{2 * length}]",
        **{f"budget.{k}": v for k, v in budget.items()},
    }
    metrics = {
        "test_score": best,
        f"test_{metric}": best,
        "solved": 0,
        "baseline": baseline,
        "solved_bar": bar,
        "best_val_score": best,
        f"test_score_len_{2 * length}": best,
        "test_score_seed_1": best,
        "seed_mean": best,
        "seed_std": best * 0.05,
        "seed_count": 2,
        "parameters": 10_000,
        "seconds_per_epoch": 0.007 * length,
        "compile_seconds": 1.5,
        "search_seconds": 36.0,
        "trials_completed": TRIALS,
        "trials_diverged": 0,
        "trials_failed": 0,
    }
    client.log_batch(
        parent,
        params=[Param(k, str(v)) for k, v in params.items()],
        metrics=[Metric(k, v, clock, 0) for k, v in metrics.items()],
        tags=[RunTag("harness.status", "done")],
    )
    client.set_terminated(parent, "FINISHED", end_time=clock + TRIALS * 4000)


def make_trial(client, experiment, rng, parent, trial, metric, direction, length, start) -> float:
    """One trial's child run: hyperparameters, epochs by step, summary metrics; its objective."""
    from mlflow.entities import Metric, Param

    tags = {
        "mlflow.parentRunId": parent,
        "harness.kind": "trial",
        "harness.trial_id": str(trial),
        "harness.status": "finished",
    }
    child = client.create_run(experiment, start_time=start, tags=tags).info.run_id
    hp = {
        "units": rng.choice([32, 64, 128]),
        "depth": rng.integers(1, 3),
        "dropout": rng.choice([0.0, 0.1, 0.2]),
        "learning_rate": 10 ** rng.uniform(-4, -2),
        "clip_gradients": bool(rng.integers(2)),
    }
    score = float(rng.uniform(0.01, 0.3) if direction == "min" else rng.uniform(0.5, 1.0))
    names = ("loss", "val_loss", metric, f"val_{metric}")
    epochs = [
        Metric(n, score * (2 - e / EPOCHS), start + e, e) for e in range(EPOCHS) for n in names
    ]
    summary = {
        "objective": score,
        "trial_seconds": 3.5,
        "epochs": EPOCHS,
        "seconds_per_epoch": 0.007 * length,
    }
    epochs += [Metric(k, v, start + 3500, 0) for k, v in summary.items()]
    client.log_batch(child, params=[Param(k, str(v)) for k, v in hp.items()], metrics=epochs)
    client.set_terminated(child, "FINISHED", end_time=start + 3500)
    return score


def best_of(repeats: int, call) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    harness = Path(sys.executable).with_name("harness")
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")}
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size, lengths in SIZES.items():
            folder = Path(tmp) / str(size)
            folder.mkdir()
            started = time.perf_counter()
            runs = make_store(folder, lengths)
            made = time.perf_counter() - started
            uri = f"sqlite:///{folder / 'mlflow.db'}"
            store, tracker = open_for_reading(uri), open_store(uri)
            read = best_of(args.repeats, lambda s=store: read_store(s, EXPERIMENT))
            via_mlflow = best_of(args.repeats, lambda t=tracker: read_store(t, EXPERIMENT))
            whole = best_of(args.repeats, lambda s=store, f=folder: build(s, EXPERIMENT, f / "r"))
            started = time.perf_counter()
            subprocess.run(
                [str(harness), "report", "--experiment", EXPERIMENT, "--out", "cli"],
                cwd=folder,
                env=env,
                check=True,
                capture_output=True,
            )
            cli = time.perf_counter() - started
            cells = len(TASKS) * len(FAMILIES) * len(lengths)
            rows[size] = (runs, cells, read, via_mlflow, whole, cli)
            print(
                f"store of {runs:>5,} runs ({cells:>3} cells, made in {made:5.1f} s): "
                f"read {read:6.3f} s (through MlflowClient {via_mlflow:6.3f} s, "
                f"x{read / via_mlflow:.2f}), build {whole:6.3f} s, `harness report` {cli:6.2f} s",
                flush=True,
            )
    ratio = [large / small for small, large in zip(rows[100], rows[1000], strict=True)]
    print(
        f"ratio 1,000 / 100 runs (x{ratio[0]:.0f} runs): read x{ratio[2]:.1f}, "
        f"build x{ratio[4]:.2f}, `harness report` x{ratio[5]:.2f}"
    )
    cli = rows[1000][5]
    verdict = "ok" if cli <= TARGET else "over"
    print(f"1,000 runs: `harness report` {cli:.2f} s, target {TARGET:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
