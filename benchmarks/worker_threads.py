"""Epoch time of concurrent training processes under XLA's CPU threading settings.

`--workers 2` on a 2-core CPU runs two JAX processes at once; by default each lets XLA
use every core for its matrix products, so they compete. This starts `--processes`
copies of one training job at the same time, once per setting below, and prints each
family's median epoch time (epochs after the first, whose time includes compilation)
and its ratio to the default, measured in the same run:

- default: XLA_FLAGS as harness/backend/device.py sets it (Eigen's thread pool on);
- one thread: Eigen's thread pool off and one intra-op thread per process;
- one thread, pinned: as above, and each process held to its own core.

    .venv/bin/python benchmarks/worker_threads.py [--processes 2] [--length 160]
        [--families gru lstm transformer] [--examples 2048] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from backend_epochs import epoch_timer_class

ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
SETTINGS = {
    "default": {"flags": "--xla_cpu_multi_thread_eigen=true", "pinned": False},
    "one thread": {"flags": ONE_THREAD, "pinned": False},
    "one thread, pinned": {"flags": ONE_THREAD, "pinned": True},
}


def measure(families: list[str], length: int, examples: int, epochs: int) -> dict:
    """In this process: each family's epoch seconds after the first, on adding at `length`."""
    from harness import backend

    backend.load_frameworks()
    import keras
    import keras_tuner as kt

    from search_spaces import get_space
    from tasks import get_task

    timer_class, task, results = epoch_timer_class(), get_task("adding"), {}
    x, y = task.generate(examples, length, 0, "train")
    for family in families:
        keras.backend.clear_session()
        model = get_space(family, task).build(kt.HyperParameters())
        timer = timer_class()
        model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[timer])
        results[family] = timer.times[1:]
    return results


def run_setting(setting: dict, args: argparse.Namespace) -> dict[str, float]:
    """Median epoch seconds per family over `args.processes` processes run at once."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": setting["flags"]}
    command = [sys.executable, __file__, "--inner", "--length", str(args.length),
               "--examples", str(args.examples), "--epochs", str(args.epochs),
               "--families", *args.families]  # fmt: skip
    cores = os.cpu_count() or 1
    processes = []
    for index in range(args.processes):
        pin = (
            (lambda core=index % cores: os.sched_setaffinity(0, {core}))
            if setting["pinned"]
            else None
        )
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, preexec_fn=pin))  # fmt: skip
    times: dict[str, list[float]] = {family: [] for family in args.families}
    for process in processes:
        out, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a training process failed:\n{err[-2000:]}")
        for family, seconds in json.loads(out.strip().splitlines()[-1]).items():
            times[family] += seconds
    return {family: statistics.median(seconds) for family, seconds in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--length", type=int, default=160)
    parser.add_argument("--families", nargs="+", default=["gru", "lstm", "transformer"])
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(json.dumps(measure(args.families, args.length, args.examples, args.epochs)))
        return
    print(f"{args.processes} processes at once on {os.cpu_count()} cores, adding at "
          f"L={args.length}, {args.examples} sequences, median epoch seconds:")  # fmt: skip
    table = {name: run_setting(setting, args) for name, setting in SETTINGS.items()}
    print(f"{'setting':<20}" + "".join(f"{family:>14}" for family in args.families))
    for name, row in table.items():
        cells = (f"{row[f]:>7.2f}s {row[f] / table['default'][f]:4.2f}x" for f in args.families)
        print(f"{name:<20}" + "".join(f"{cell:>14}" for cell in cells))


if __name__ == "__main__":
    main()
