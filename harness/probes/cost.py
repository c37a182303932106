"""Cost scaling: time and peak memory per training step as sequence length grows.

For each family (default hyperparameters) and each length, with the batch size
fixed: WARMUP untimed training steps (the first compiles, the next lets a GPU
library pick its kernels), then the median time of `--steps` more (STEPS unless
given), each waited for
on the device (`backend.train_step`: a step whose result cannot be read raises,
never counts as fast), then one step under `backend.step_memory()` for its peak
memory (the backend's own counters on a GPU; on CPU the growth of the process's
resident memory during the step: peak RSS, VmHWM reset through
/proc/self/clear_refs, minus RSS before it). Exponents come from a fit of
log(value) on log(length) over the longer half of the lengths (at least three
points), where a fixed per-step overhead no longer hides the growth. With
`--precision bf16` every family runs in mixed bfloat16 with fused (flash)
attention allowed, where the backend has it.

Each family runs in its own worker process, lengths ascending, with JAX's
compilation cache where the command keeps it. A length that runs out of memory (an out-of-memory error from the backend, the worker killed,
or its resident memory above `--memory-cap-gb`, when the parent stops it before
the machine runs short) is recorded as such, and the family's longer lengths are
not tried. An interrupted probe (Ctrl-C, a time limit) records the families it finished.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from harness.errors import UserError, unknown
from harness.probes import loglog_fit, start_probe
from harness.tracking import Tracker

TASK = "adding"
FAMILIES = (
    "simple_rnn",
    "lstm",
    "gru",
    "mingru",
    "minlstm",
    "lru",
    "mingru_signed",
    "rotscan",
    "transformer",
)
LENGTHS = (64, 128, 256, 512, 1024)
BATCH = 16
STEPS = 5
WARMUP = 2
PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16"}
MEMORY_CAP_GB = 8.0
ATTENTION, RECURRENT = "transformer", "lstm"
MIN_EXPONENT_GAP = 0.05  # the least difference of time exponents that predicts a crossover
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
"""glibc settings of the worker: large blocks are mapped and unmapped, never kept in the
heap, so the resident size falls back when a step's buffers are freed (CPU memory)."""


@dataclass
class FamilyCost:
    """One family's measurements by length; `oom` is the first length that ran out of memory."""

    family: str
    seconds: dict[int, float] = field(default_factory=dict)
    memory_mb: dict[int, float] = field(default_factory=dict)
    oom: int | None = None
    method: str = ""

    @property
    def time_exponent(self) -> float:
        return exponent(self.seconds)

    @property
    def memory_exponent(self) -> float:
        return exponent(self.memory_mb)


def exponent(by_length: dict[int, float]) -> float:
    """The slope of log(value) on log(length) over the longer half of the lengths (>= 3)."""
    lengths = sorted(L for L, v in by_length.items() if np.isfinite(v) and v > 0)
    if len(lengths) < 2:
        return float("nan")
    upper = lengths[-max(3, (len(lengths) + 1) // 2) :]
    return loglog_fit(upper, [by_length[L] for L in upper])[0]


def crossover(slow: dict[int, float], fast: dict[int, float]) -> tuple[float, str]:
    """The length where `slow` (attention) first takes longer than `fast` (an LSTM).

    Measured: interpolated on log-log axes between the two lengths around the first
    change of sign. Else predicted from the two fitted power laws ("predicted"), or
    nan ("none") when they do not cross above the measured lengths at a finite length:
    exponents less than MIN_EXPONENT_GAP apart are taken as equal (timing noise).
    """
    common = sorted(set(slow) & set(fast))
    ratio = [(L, np.log(slow[L] / fast[L])) for L in common if slow[L] > 0 and fast[L] > 0]
    for (a, ra), (b, rb) in zip(ratio, ratio[1:], strict=False):
        if ra <= 0 < rb:
            t = -ra / (rb - ra)
            return float(np.exp(np.log(a) + t * (np.log(b) - np.log(a)))), "measured"
    if ratio and ratio[0][1] > 0:
        return float(ratio[0][0]), "measured: already slower at the shortest length"
    fits = [loglog_fit(*zip(*sorted(d.items()), strict=True)) for d in (slow, fast)]
    (p_slow, c_slow), (p_fast, c_fast) = fits
    if ratio and p_slow - p_fast > MIN_EXPONENT_GAP:  # False for nan exponents
        log_length = (c_fast - c_slow) / (p_slow - p_fast)
        if np.log(ratio[-1][0]) < log_length < np.log(np.finfo(float).max):
            return float(np.exp(log_length)), "predicted"
    return float("nan"), "none"


# -- the worker: one family, lengths ascending, one JSON line per event -----------------------


def worker(
    task_name: str,
    family: str,
    lengths: list[int],
    batch: int,
    steps: int,
    precision: str,
    cache: str | None = None,
) -> None:
    from harness import backend

    backend.configure()  # Keras and Keras Tuner only: the worker never needs TensorFlow's import
    import keras

    if cache:
        backend.use_compile_cache(cache)

    from search_spaces import get_space
    from tasks import get_task

    keras.mixed_precision.set_global_policy(PRECISIONS[precision])
    if precision == "bf16":
        keras.config.enable_flash_attention()
    task = get_task(task_name)
    for length in lengths:
        print(json.dumps({"start": length}), flush=True)
        try:
            backend.free_memory()
            keras.utils.set_random_seed(0)
            model = get_space(family, task).default_model()
            x, y = task.generate(batch, length, length, "train")
            for _ in range(WARMUP):
                backend.train_step(model, x, y)
            times = []
            for _ in range(steps):
                started = time.perf_counter()
                backend.train_step(model, x, y)
                times.append(time.perf_counter() - started)
            with backend.step_memory() as memory:
                backend.train_step(model, x, y)
        except Exception as error:
            if backend.is_out_of_memory(error):
                print(json.dumps({"oom": length}), flush=True)
                return
            raise
        line = {
            "length": length,
            "seconds": float(np.median(times)),
            "memory_mb": memory.mb,
            "method": memory.method,
        }
        print(json.dumps(line), flush=True)


def run_family(
    task: str,
    family: str,
    lengths,
    batch: int,
    steps: int,
    memory_cap_gb: float,
    on_line,
    precision: str = "fp32",
    cache=None,
) -> FamilyCost:
    """Run the worker for one family; stop it when its resident memory passes the cap.

    `cache`: the folder of JAX's compilation cache for the worker (none when None)."""
    import psutil

    command = [
        sys.executable, "-m", "harness.probes.cost", task, family, batch, steps, precision,
        cache or "", *lengths,
    ]  # fmt: skip
    errors = tempfile.TemporaryFile(mode="w+")  # a file, so a chatty worker never blocks
    process = subprocess.Popen(
        [str(part) for part in command],
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        env={**os.environ, **MALLOC, "PYTHONUNBUFFERED": "1"},
    )
    cost, current, capped = FamilyCost(family), None, [False]
    watched = psutil.Process(process.pid)

    def watch():
        while process.poll() is None:
            try:
                if watched.memory_info().rss > memory_cap_gb * 2**30:
                    capped[0] = True
                    process.kill()
                    return
            except psutil.Error:
                return
            time.sleep(0.1)

    threading.Thread(target=watch, daemon=True).start()
    try:
        for text in process.stdout:
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                continue
            if "start" in line:
                current = line["start"]
            elif "oom" in line:
                cost.oom = line["oom"]
            elif "length" in line:
                cost.seconds[line["length"]] = line["seconds"]
                cost.memory_mb[line["length"]] = line["memory_mb"]
                cost.method = line["method"]
                current = None
            on_line(family, line)
    except BaseException:  # interrupted: the worker goes too
        process.kill()
        process.wait()
        raise
    code = process.wait()
    errors.seek(0)
    stderr = errors.read()
    errors.close()
    left = sorted(set(lengths) - set(cost.seconds))
    if cost.oom is None and left and (capped[0] or code in (-9, 137)):  # at the cap, or killed
        cost.oom = current if current is not None else left[0]
        on_line(family, {"oom": cost.oom})
    elif code != 0 and cost.oom is None:
        last = stderr.strip().splitlines()[-1:] or [f"exit code {code}"]
        raise RuntimeError(f"cost probe of {family} failed at length {current}: {last[0]}")
    return cost


def check(
    task_name: str, families, lengths, batch: int, steps: int, memory_cap_gb: float, precision
):
    from search_spaces import family_class
    from tasks import get_task

    task = get_task(task_name)
    for family in families:
        family_class(family)
    if precision not in PRECISIONS:
        raise unknown("precision", precision, list(PRECISIONS))
    if len(lengths) < 2:
        raise UserError("give at least two --lengths values (an exponent needs two points)")
    for length in lengths:
        task.check_length(length)
    if not 1 <= batch <= 4096:
        raise UserError(f"--batch-size {batch} is out of range: accepted 1..4096")
    if not 1 <= steps <= 100:
        raise UserError(f"--steps {steps} is out of range: accepted 1..100")
    if not memory_cap_gb > 0:
        raise UserError(f"--memory-cap-gb {memory_cap_gb} must be positive")
    return task


def start(
    tracker: Tracker, experiment: str, task: str, batch: int, steps: int, precision: str = "fp32"
) -> str:
    """The probe's parent run with its settings, opened before measuring (so an interrupted
    probe has only `record` left to do)."""
    params = {
        "task": task,
        "batch_size": batch,
        "timed_steps": steps,
        "warmup_steps": WARMUP,
        "precision": precision,
    }
    return start_probe(tracker, experiment, "cost", params)


def record(tracker: Tracker, run_id: str, costs: list[FamilyCost]) -> tuple[float, str]:
    """Seconds and MiB per step by length, the exponents and the crossover, on the run
    `start` opened, which ends FINISHED; (the crossover length, its kind)."""
    by_family = {c.family: c for c in costs}
    length, kind = float("nan"), "none"
    if ATTENTION in by_family and RECURRENT in by_family:
        length, kind = crossover(by_family[ATTENTION].seconds, by_family[RECURRENT].seconds)
    methods = sorted({c.method for c in costs if c.method})
    params = {
        "families": ",".join(c.family for c in costs),
        "lengths": ",".join(str(L) for L in sorted({L for c in costs for L in c.seconds})),
        "memory_method": "; ".join(methods),
        "crossover": f"{ATTENTION} slower than {RECURRENT}: {kind}",
    }
    series, metrics = {}, {}
    for c in costs:
        series[f"step_seconds/{c.family}"] = c.seconds
        series[f"step_memory_mb/{c.family}"] = c.memory_mb
        metrics[f"time_exponent/{c.family}"] = c.time_exponent
        metrics[f"memory_exponent/{c.family}"] = c.memory_exponent
        if c.oom is not None:
            metrics[f"out_of_memory_length/{c.family}"] = c.oom
    metrics["crossover_length"] = length
    tracker.log_series(run_id, series)
    finite = {k: v for k, v in metrics.items() if np.isfinite(v)}
    tracker.log(run_id, params=params, metrics=finite)
    tracker.finish(run_id)
    return length, kind


if __name__ == "__main__":
    task_arg, family_arg, batch_arg, steps_arg, precision_arg, cache_arg, *length_args = sys.argv[
        1:
    ]
    lengths_arg = [int(L) for L in length_args]
    worker(
        task_arg, family_arg, lengths_arg, int(batch_arg), int(steps_arg), precision_arg, cache_arg
    )
