"""A suite's wall time with --workers 1 and --workers N, measured in one run.

Each run starts from a fresh working directory and store (the same suite, the same
cells), so the only difference is how many trials, evaluations and retrains run at
once on this machine. Prints each wall time and the ratio to --workers 1.

    .venv/bin/python benchmarks/workers.py [--suite quick] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    times = {}
    for count in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "harness", "run", "--suite", args.suite,
                       "--workers", str(count)]  # fmt: skip
            started = time.perf_counter()
            result = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True)
            times[count] = time.perf_counter() - started
            if result.returncode != 0:
                raise SystemExit(f"--workers {count} failed:\n{result.stderr[-2000:]}")
        print(f"suite {args.suite}, --workers {count}: {times[count]:.0f} s", flush=True)
    base = times[args.workers[0]]
    print(f"{os.cpu_count()} cores; wall time / --workers {args.workers[0]}:")
    for count, seconds in times.items():
        print(f"  --workers {count}: {seconds:8.0f} s  {seconds / base:5.2f}")


if __name__ == "__main__":
    main()
