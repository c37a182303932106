"""What JAX's persistent compilation cache saves: a retrain's compile seconds, a suite's time.

Measured in one run, on this machine:

1. compile seconds of a retrain (a fresh process building a family's default model and
   fitting it for two epochs: the first epoch's time minus the second's) without the
   cache, with an empty cache (which it fills), and with the filled cache, as a retrain
   of the best hyperparameters, verify or a rerun finds it; the ratio filled / none;
2. the wall time of `harness run --suite SUITE` in a fresh working directory and store,
   with the cache off (HARNESS_COMPILE_CACHE=0) and on, and the ratio on / off.

    .venv/bin/python benchmarks/compile_cache.py [--families gru,lstm,transformer]
        [--suite quick | --no-suite]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RETRAIN = """
import json, sys, time
from harness import backend
backend.configure()
backend.load_frameworks()
if sys.argv[2]:
    backend.use_compile_cache(sys.argv[2])
from search_spaces import get_space
from tasks import get_task
task = get_task("adding")
x, y = task.generate(1024, 100, 0, "train")
model = get_space(sys.argv[1], task).default_model()
seconds = []
for _ in range(2):
    started = time.perf_counter()
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    seconds.append(time.perf_counter() - started)
print(json.dumps({"compile": seconds[0] - seconds[1], "epoch": seconds[1]}))
"""


def run(command: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="gru,lstm,transformer")
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--no-suite", action="store_true", help="Only the retrains.")
    args = parser.parse_args()
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    print(f"JAX, {os.cpu_count()} cores; compile seconds = first epoch - second epoch")
    print(f"{'family':<12} {'no cache':>9} {'empty':>9} {'filled':>9} {'filled/none':>12}")
    with tempfile.TemporaryDirectory() as cache:
        for family in args.families.split(","):
            compiles = []
            for folder in ("", cache, cache):
                out = run([sys.executable, "-c", RETRAIN, family, folder], ROOT, env)
                compiles.append(json.loads(out.stdout.strip().splitlines()[-1])["compile"])
            ratio = compiles[2] / compiles[0] if compiles[0] > 0 else float("nan")
            print(
                f"{family:<12} {compiles[0]:9.2f} {compiles[1]:9.2f} {compiles[2]:9.2f} {ratio:12.2f}"
            )
    if args.no_suite:
        return
    times = {}
    for label, value in (("off", "0"), ("on", "1")):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            command = [sys.executable, "-m", "harness", "run", "--suite", args.suite]
            run(command, Path(tmp), {**env, "HARNESS_COMPILE_CACHE": value})
            times[label] = time.perf_counter() - started
    print(
        f"suite {args.suite}: cache off {times['off']:.0f} s, on {times['on']:.0f} s, "
        f"on / off {times['on'] / times['off']:.2f}"
    )


if __name__ == "__main__":
    main()
