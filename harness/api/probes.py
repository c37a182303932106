"""The probes: gradient flow, the rotation counters, cost by length, and their report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import backend
from harness.api.common import (
    DEFAULT_WORKDIR,
    Progress,
    experiment_name,
    open_reader,
    quiet,
    writable,
)
from harness.api.store import Reported
from harness.errors import UserError


@dataclass
class Probed:
    """A probe's run: its id, in `experiment` of `store`."""

    experiment: str
    store: str
    run_id: str


@dataclass
class GradientsProbed(Probed):
    """What `probe_gradients` measured and recorded."""

    curves: list  # harness.probes.gradients.Curve, in the order measured


@dataclass
class RotationProbed(Probed):
    """What `probe_rotation` measured and recorded."""

    scores: dict  # construction -> length -> its counting scores
    learned: dict  # (family, training length) -> length -> per-step accuracy
    rotations: dict  # (training length, seed) -> what rotation_of reads off a learned rotscan


@dataclass
class CostProbed(Probed):
    """What `probe_cost` measured and recorded. Interrupted (Ctrl-C): the families finished
    are recorded; with none (`costs` empty), the run is ended KILLED and nothing recorded."""

    costs: list  # harness.probes.cost.FamilyCost, one per family measured
    crossover: float  # the length where attention's step becomes slower (nan: none)
    crossover_kind: str
    interrupted: bool


def _probe_store(store: str | None, suite: str, experiment: str | None):
    """(the store, created if missing; the experiment a probe reads and writes: `experiment`,
    else the suite's)."""
    from harness.suites import suite_experiment
    from harness.tracking import Tracker

    name = experiment or suite_experiment(suite)
    tracker = Tracker(store)
    tracker.check()
    return tracker, name


def _probe_budgets(suite: str, experiment: str | None) -> set[str] | None:
    """The budgets whose cells a probe reads: the suite's; any (the latest) with `experiment`."""
    from harness.probes import suite_budgets

    return None if experiment else suite_budgets(suite)


def _compile_cache(folder: str | Path | None) -> None:
    """Keras loaded, with JAX's compilation cache in `folder` (none when None)."""
    backend.load_frameworks()
    if folder is not None:
        backend.use_compile_cache(Path(folder))


def probe_gradients(
    *,
    task: str | None = None,
    families: Sequence[str] | None = None,
    lengths: Sequence[int] | None = None,
    batch_size: int | None = None,
    train_epochs: int | None = None,
    suite: str = "quick",
    experiment: str | None = None,
    store: str | None = None,
    compile_cache: str | Path | None = DEFAULT_WORKDIR / "jax-cache",
    progress: Progress = quiet,
) -> GradientsProbed:
    """Norm of d(loss at the last step)/d(x_t) by distance, at initialisation and after
    training, beside the first input's share predicted from the model's state Jacobians
    (harness/probes/gradients.py), recorded in `experiment` (else the suite's).
    None: the probe's default (gradients.TASK, FAMILIES, LENGTHS, BATCH, TRAIN_EPOCHS)."""
    _compile_cache(compile_cache)
    from harness.probes import gradients

    families = list(gradients.FAMILIES if families is None else families)
    lengths = list(gradients.LENGTHS if lengths is None else lengths)
    batch_size = gradients.BATCH if batch_size is None else batch_size
    train_epochs = gradients.TRAIN_EPOCHS if train_epochs is None else train_epochs
    spec = gradients.check(task or gradients.TASK, families, lengths, batch_size)
    if train_epochs < 1:
        raise UserError(f"--train-epochs {train_epochs} must be at least 1")
    tracker, name = _probe_store(store, suite, experiment)

    def show(curve) -> None:
        predicted = curve.prediction
        said = (
            f"predicted {predicted.ratio:.3g} (log10 agreement {curve.agreement:+.2f}, "
            f"{predicted.method})"
            if predicted.ratio == predicted.ratio  # not NaN: predicted
            else predicted.method
        )
        progress(
            f"{curve.family} L={curve.length} {curve.stage}: decay per step {curve.decay:.4f}, "
            f"first input / last {curve.first_input_ratio:.3g}, {said} ({curve.source})"
        )

    curves = gradients.measure(
        tracker, name, spec, families, lengths, batch_size, train_epochs, on_curve=show,
        budgets=_probe_budgets(suite, experiment),
    )  # fmt: skip
    run_id = gradients.record(tracker, name, spec, curves, batch_size)
    return GradientsProbed(name, tracker.uri, run_id, curves)


def probe_rotation(
    *,
    lengths: Sequence[int] | None = None,
    examples: int | None = None,
    suite: str = "quick",
    experiment: str | None = None,
    store: str | None = None,
    compile_cache: str | Path | None = DEFAULT_WORKDIR / "jax-cache",
) -> RotationProbed:
    """The hand-built rotation counters scored on `counting` beside the store's learned
    models, and the rotation each learned rotscan model applies
    (harness/probes/rotation.py). None: the probe's default (rotation.LENGTHS, EXAMPLES)."""
    _compile_cache(compile_cache)
    from harness.probes import rotation  # imports Keras

    lengths = list(rotation.LENGTHS if lengths is None else lengths)
    examples = rotation.EXAMPLES if examples is None else examples
    rotation.check(lengths, examples)
    tracker, name = _probe_store(store, suite, experiment)
    scores = rotation.evaluate(lengths, examples)
    budgets = _probe_budgets(suite, experiment)
    learned = rotation.learned(tracker, name, lengths, examples, budgets=budgets)
    rotations = rotation.learned_rotations(tracker, name, budgets)
    run_id = rotation.record(tracker, name, scores, learned, rotations, examples)
    return RotationProbed(name, tracker.uri, run_id, scores, learned, rotations)


def probe_cost(
    *,
    task: str | None = None,
    families: Sequence[str] | None = None,
    lengths: Sequence[int] | None = None,
    batch_size: int | None = None,
    steps: int | None = None,
    memory_cap_gb: float | None = None,
    precision: str = "fp32",
    suite: str = "quick",
    experiment: str | None = None,
    store: str | None = None,
    compile_cache: str | Path | None = DEFAULT_WORKDIR / "jax-cache",
    progress: Progress = quiet,
) -> CostProbed:
    """Time and peak memory per training step by length, one worker process per family
    (harness/probes/cost.py); exponents and the crossover. None: the probe's default
    (cost.TASK, FAMILIES, LENGTHS, BATCH, STEPS, MEMORY_CAP_GB)."""
    from harness.probes import cost

    task = task or cost.TASK
    families = list(cost.FAMILIES if families is None else families)
    lengths = list(cost.LENGTHS if lengths is None else lengths)
    batch_size = cost.BATCH if batch_size is None else batch_size
    steps = cost.STEPS if steps is None else steps
    memory_cap_gb = cost.MEMORY_CAP_GB if memory_cap_gb is None else memory_cap_gb
    cost.check(task, families, lengths, batch_size, steps, memory_cap_gb, precision)
    tracker, name = _probe_store(store, suite, experiment)

    def show(family: str, line: dict) -> None:
        if "length" in line:
            progress(
                f"{family} L={line['length']}: {line['seconds'] * 1000:.1f} ms/step, "
                f"{line['memory_mb']:.1f} MiB"
            )
        elif "oom" in line:
            progress(f"{family} L={line['oom']}: out of memory")

    run_id = cost.start(tracker, name, task, batch_size, steps, precision)
    costs, interrupted = [], False
    try:
        for family in families:
            costs.append(
                cost.run_family(
                    task, family, lengths, batch_size, steps, memory_cap_gb, show, precision,
                    compile_cache,
                )
            )  # fmt: skip
    except KeyboardInterrupt:  # the families finished are recorded
        interrupted = True
    except RuntimeError as error:
        tracker.finish(run_id, "FAILED")
        raise UserError(str(error)) from None
    if not costs:
        tracker.finish(run_id, "KILLED")
        return CostProbed(name, tracker.uri, run_id, [], math.nan, "none", True)
    length, kind = cost.record(tracker, run_id, costs)
    return CostProbed(name, tracker.uri, run_id, costs, length, kind, interrupted)


def probe_report(
    store: str | None = None,
    out: str | Path = "reports/probes",
    *,
    experiment: str | None = None,
    suite: str | None = None,
    progress: Progress = quiet,
) -> Reported:
    """Write the probes' report (probes.md, index.html, figures) under `out` from their latest
    runs in `experiment` (else the suite's, else the store's latest run's)."""
    from harness.probes import report as probes_report

    tracker = open_reader(store, runs_only=False)
    name = experiment_name(tracker, suite, experiment)
    out = writable(Path(out), "output folder")
    written = probes_report.build(tracker, name, out, progress)
    return Reported(name, written.leaderboard, written.html, written.figures, None)
