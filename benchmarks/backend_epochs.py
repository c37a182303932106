"""Epoch time per Keras backend (jax, tensorflow, torch) per family at T=100 and T=1000.

Each backend runs in its own process (Keras picks the backend at import). The
model is each family's default configuration; the figure is the second epoch's
time (the first includes compilation). A backend that is not installed is
reported as such. Defaults in harness/backend/device.py are chosen from these figures.

    python benchmarks/backend_epochs.py [--lengths 100 1000] [--families lstm gru ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

FAMILIES = ["lstm", "gru", "simple_rnn", "transformer"]
BACKENDS = ["jax", "tensorflow", "torch"]
EXAMPLES = {100: 4096, 1000: 512}


def epoch_timer_class():
    """A Keras callback recording each epoch's seconds (Keras is imported late, per backend)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    return EpochTimer


def measure(families: list[str], lengths: list[int]) -> dict:
    """In this process: seconds of the second epoch for each family and length."""
    from harness import backend

    backend.load_frameworks()
    import keras
    import keras_tuner as kt

    from search_spaces import get_space
    from tasks import get_task

    EpochTimer = epoch_timer_class()  # noqa: N806
    task, results = get_task("adding"), {}
    for length in lengths:
        n = EXAMPLES.get(length, 512)
        x, y = task.generate(n, length, 0, "train")
        for family in families:
            keras.backend.clear_session()
            model = get_space(family, task).build(kt.HyperParameters())
            timer = EpochTimer()
            model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[timer])
            results[f"{family}@{length}"] = {"seconds": timer.times[1], "examples": n}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--families", nargs="+", default=FAMILIES)
    parser.add_argument("--backends", nargs="+", default=BACKENDS)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(measure(args.families, args.lengths)))
        return

    table: dict[str, dict] = {}
    for name in args.backends:
        module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[name]
        if importlib.util.find_spec(module) is None:
            print(f"{name}: not installed, skipped")
            continue
        env = {**os.environ, "KERAS_BACKEND": name}
        command = [
            sys.executable,
            __file__,
            "--inner",
            "--lengths",
            *map(str, args.lengths),
            "--families",
            *args.families,
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name}: failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        table[name] = json.loads(done.stdout.strip().splitlines()[-1])

    print(f"{'family@T':<18}{'examples':>9}" + "".join(f"{b:>12}" for b in table))
    for key in next(iter(table.values()), {}):
        row = f"{key:<18}{next(iter(table.values()))[key]['examples']:>9}"
        row += "".join(f"{table[b][key]['seconds']:>11.2f}s" for b in table)
        print(row)
    if "jax" in table:
        print("ratio to jax (lower is faster):")
        for key in table["jax"]:
            base = table["jax"][key]["seconds"]
            print(
                f"  {key:<16}"
                + "".join(f"{b}={table[b][key]['seconds'] / base:.2f} " for b in table)
            )


if __name__ == "__main__":
    main()
