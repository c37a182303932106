"""How long the commands that only list, read or reject take, each in a fresh process.

Measured in one run, best of --repeats, against two baselines measured alongside:
a bare Python start-up, and importing the MLflow client (the floor of any command
that reads the store). The targets (issue "Numbers a reader can check"): listing
tasks and families and rejecting bad input under 1 s, `harness status` on a local
store under 2 s. The store for `status` is made once with a tiny real run.

    .venv/bin/python benchmarks/cli_latency.py [--repeats 5]
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
PYTHON = sys.executable
HARNESS = [PYTHON, "-m", "harness"]
TINY = ["--max-trials", "1", "--epochs", "1", "--n-train", "32", "--n-val", "32",
        "--n-test", "32", "--batch-size", "32"]  # fmt: skip


def seconds(command: list[str], cwd: Path, repeats: int, expect: int) -> float:
    """The best wall time of `command` over `repeats` fresh processes."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        best = min(best, time.perf_counter() - started)
        if result.returncode != expect:
            raise SystemExit(f"{' '.join(command)} exited {result.returncode}: {result.stderr}")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = [*HARNESS, "run", "--task", "adding", "--length", "8", "--family", "gru", *TINY]
        subprocess.run(run, cwd=folder, check=True, capture_output=True)
        cases = [
            ("python start-up (baseline)", [PYTHON, "-c", "pass"], 0, None),
            ("import mlflow.tracking (baseline)", [PYTHON, "-c", "import mlflow.tracking"], 0, None),
            ("harness tasks", [*HARNESS, "tasks"], 0, 1.0),
            ("harness spaces", [*HARNESS, "spaces"], 0, 1.0),
            ("harness run --length 0 (rejected)",
             [*HARNESS, "run", "--task", "adding", "--length", "0", "--family", "gru"], 2, 1.0),
            ("harness run --family nosuch (rejected)",
             [*HARNESS, "run", "--task", "adding", "--length", "8", "--family", "nosuch"], 2, 1.0),
            ("harness status (local store, 1 cell)", [*HARNESS, "status"], 0, 2.0),
        ]  # fmt: skip
        seconds_by_case = {
            name: seconds(cmd, folder, args.repeats, code) for name, cmd, code, _ in cases
        }
    start = seconds_by_case["python start-up (baseline)"]
    print(f"best of {args.repeats} fresh processes each ({os.cpu_count()} cores)")
    print(f"{'command':<42} {'seconds':>8} {'x start-up':>11} {'target':>7}")
    for name, _, _, target in cases:
        mark = "" if target is None else ("ok" if seconds_by_case[name] <= target else "OVER")
        limit = "" if target is None else f"{target:g} s"
        print(
            f"{name:<42} {seconds_by_case[name]:8.2f} {seconds_by_case[name] / start:11.1f} {limit:>7} {mark}"
        )


if __name__ == "__main__":
    main()
