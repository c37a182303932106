"""The harness's cost per trial against a bare `model.fit`, and memory across many trials.

For one cell (a task, a length, a family with its default hyperparameters) it
times, alternately and in the same process, a bare `model.fit` of the model and
one harness trial (Keras Tuner + MLflow child run + epoch logging + checkpoint)
of the same model on the same arrays, and prints the medians and their ratio.
Then it runs a 20-trial search and prints the process memory after each trial
(keras-tuner #873: memory growing across trials).

    python benchmarks/trial_overhead.py [--task adding --length 100 --family gru --epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness import backend

backend.load_frameworks()

import keras  # noqa: E402
import keras_tuner as kt  # noqa: E402

from harness.tracking import Tracker  # noqa: E402
from harness.tuning import SpaceHyperModel, make_tuner  # noqa: E402
from search_spaces import get_space  # noqa: E402
from tasks import get_task  # noqa: E402


def fixed_defaults(hypermodel) -> kt.HyperParameters:
    """The family's default hyperparameters, declared so a tuner cannot change them."""
    defaults = kt.HyperParameters()
    hypermodel.build(defaults)
    fixed = kt.HyperParameters()
    for name, value in defaults.values.items():
        fixed.Fixed(name, value)
    return fixed


class Clock:
    """Wall-clock and process CPU seconds (all threads) of a block: CPU time is the figure
    that stays comparable when other jobs share the machine."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def bare_fit(hypermodel, hp, train, val, epochs, batch_size) -> Clock:
    keras.backend.clear_session()
    with Clock() as clock:
        model = hypermodel.build(hp)
        model.fit(*train, validation_data=val, epochs=epochs, batch_size=batch_size, verbose=0)
    return clock


def harness_trial(hypermodel, hp, task, length, train, val, epochs, batch_size, folder, index):
    tracker = Tracker(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = tracker.experiment_id("overhead")
    parent = tracker.start_run(experiment, f"cell {index}", {"harness.kind": "cell"})
    tuner = make_tuner(
        "random",
        hypermodel,
        task,
        length,
        1,
        epochs,
        1,
        index,
        str(folder / "tuners"),
        f"cell{index}",
        tracker=tracker,
        experiment_id=experiment,
        parent_run_id=parent,
        hyperparameters=hp,
        tune_new_entries=False,
    )
    with Clock() as clock:
        tuner.search(*train, validation_data=val, epochs=epochs, batch_size=batch_size, verbose=0)
    return clock


def memory_over_trials(hypermodel, task, length, train, val, folder, trials=20) -> list[float]:
    rss = []
    tuner = make_tuner(
        "random",
        hypermodel,
        task,
        length,
        trials,
        1,
        1,
        0,
        str(folder / "tuners"),
        "memory",
        on_trial=lambda event, **_: event == "end" and rss.append(backend.process_memory_mb()),
    )
    tuner.search(*train, validation_data=val, epochs=1, batch_size=64, verbose=0)
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="adding")
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--family", default="gru")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-trials", type=int, default=20)
    args = parser.parse_args()

    task = get_task(args.task)
    train = task.generate(args.n_train, args.length, 0, "train")
    val = task.generate(1024, args.length, 0, "val")
    hypermodel = SpaceHyperModel(get_space(args.family, task))
    hp = fixed_defaults(hypermodel)
    print(f"backend {backend.name()} on {backend.device()}")
    print(f"cell: {args.task} L={args.length} {args.family}, defaults {hp.values}")
    print(f"{args.epochs} epochs of {args.n_train} examples, batch 64, {args.repeats} repeats each")
    bare, tuned = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for i in range(args.repeats):
            bare.append(bare_fit(hypermodel, hp, train, val, args.epochs, 64))
            tuned.append(
                harness_trial(
                    hypermodel, hp, task, args.length, train, val, args.epochs, 64, folder, i
                )
            )
            print(
                f"  repeat {i + 1}: bare fit {bare[-1].wall:.2f} s wall / {bare[-1].cpu:.2f} s CPU, "
                f"harness trial {tuned[-1].wall:.2f} s wall / {tuned[-1].cpu:.2f} s CPU"
            )
        for kind in ("wall", "cpu"):
            b = statistics.median(getattr(c, kind) for c in bare)
            h = statistics.median(getattr(c, kind) for c in tuned)
            print(
                f"median {kind}: bare model.fit {b:.2f} s, harness trial {h:.2f} s, "
                f"ratio {h / b:.3f}"
            )

        rss = memory_over_trials(
            hypermodel,
            task,
            args.length,
            (train[0][:1024], train[1][:1024]),
            val,
            folder,
            args.memory_trials,
        )
    print(f"process memory over {len(rss)} trials (MiB): " + " ".join(f"{m:.0f}" for m in rss))
    print(
        f"growth from trial 1 to {len(rss)}: {rss[-1] - rss[0]:+.0f} MiB "
        f"({(rss[-1] - rss[0]) / max(len(rss) - 1, 1):+.1f} MiB per trial)"
    )


if __name__ == "__main__":
    main()
