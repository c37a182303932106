"""`harness probe`: gradient flow, the rotation oracle, cost scaling, and their report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from harness import backend
from harness.cli.options import (
    FamiliesOption,
    LengthsOption,
    OutDir,
    ReadExperiment,
    ReadSuite,
    TrackingUri,
    parse_lengths,
    parse_names,
    reading,
)
from harness.cli.root import COMPILE_CACHE, app, err, out, user_errors, writable_dir
from harness.errors import UserError
from harness.probes import cost, gradients

probe_app = typer.Typer(
    no_args_is_help=True,
    help="Measure mechanisms (gradient flow, counting by rotation, cost) and record them in MLflow.",
)
app.add_typer(probe_app, name="probe")

SuiteOption = Annotated[
    str, typer.Option(help="Suite whose experiment the probe reads and writes (name or TOML).")
]
ExperimentOption = Annotated[
    str | None, typer.Option(help="MLflow experiment (default: the suite's name).")
]


def _probe_store(tracking_uri: str | None, suite: str, experiment: str | None):
    from harness.suites import suite_experiment
    from harness.tracking import Tracker

    name = experiment or suite_experiment(suite)
    tracker = Tracker(tracking_uri)
    tracker.check()
    return tracker, name


def _probe_budgets(suite: str, experiment: str | None) -> set[str] | None:
    """The budgets whose cells a probe reads: the suite's; any (the latest) with --experiment."""
    from harness.probes import suite_budgets

    return None if experiment else suite_budgets(suite)


@probe_app.command("gradients")
@user_errors
def probe_gradients(
    task: Annotated[str, typer.Option(help="Task whose loss is differentiated.")] = gradients.TASK,
    families: FamiliesOption = None,
    lengths: LengthsOption = None,
    batch_size: Annotated[
        int, typer.Option(help="Examples the norms are averaged over.")
    ] = gradients.BATCH,
    train_epochs: Annotated[
        int, typer.Option(help="Epochs of the fallback training when the store has no cell.")
    ] = gradients.TRAIN_EPOCHS,
    suite: SuiteOption = "quick",
    experiment: ExperimentOption = None,
    tracking_uri: TrackingUri = None,
):
    """Norm of d(loss at the last step)/d(x_t) by distance, at initialisation and after training."""
    backend.load_frameworks()
    backend.use_compile_cache(COMPILE_CACHE)
    families = parse_names(families, gradients.FAMILIES)
    lengths = parse_lengths(lengths, gradients.LENGTHS)
    spec = gradients.check(task, families, lengths, batch_size)
    if train_epochs < 1:
        raise UserError(f"--train-epochs {train_epochs} must be at least 1")
    tracker, name = _probe_store(tracking_uri, suite, experiment)

    def show(curve):
        out.print(
            f"{curve.family} L={curve.length} {curve.stage}: decay per step {curve.decay:.4f}, "
            f"first input / last {curve.first_input_ratio:.3g} ({curve.source})",
            highlight=False,
        )

    curves = gradients.measure(
        tracker, name, spec, families, lengths, batch_size, train_epochs, on_curve=show,
        budgets=_probe_budgets(suite, experiment),
    )  # fmt: skip
    run_id = gradients.record(tracker, name, spec, curves, batch_size)
    out.print(f"probe run {run_id} in experiment '{name}' ({tracker.uri})", highlight=False)


@probe_app.command("rotation")
@user_errors
def probe_rotation(
    lengths: LengthsOption = None,
    examples: Annotated[int | None, typer.Option(help="Test sequences per length.")] = None,
    suite: SuiteOption = "quick",
    experiment: ExperimentOption = None,
    tracking_uri: TrackingUri = None,
):
    """Score the hand-built rotation counters on `counting` beside the store's learned models,
    and read off the rotation each learned rotscan model applies."""
    backend.load_frameworks()
    backend.use_compile_cache(COMPILE_CACHE)
    from harness.probes import rotation

    lengths = parse_lengths(lengths, rotation.LENGTHS)
    examples = rotation.EXAMPLES if examples is None else examples
    rotation.check(lengths, examples)
    tracker, name = _probe_store(tracking_uri, suite, experiment)
    scores = rotation.evaluate(lengths, examples)
    table = Table(
        "construction", "length", "per-step accuracy", "sequence accuracy", title="weights set"
    )
    for construction, by_length in scores.items():
        for length, score in by_length.items():
            accuracy, sequences = score["accuracy"], score["sequence_accuracy"]
            table.add_row(construction, str(length), f"{accuracy:.4f}", f"{sequences:.4f}")
    out.print(table)
    budgets = _probe_budgets(suite, experiment)
    found = rotation.learned(tracker, name, lengths, examples, budgets=budgets)
    for (family, trained), by_length in sorted(found.items()):
        accuracies = ", ".join(f"L={L} {a:.4f}" for L, a in by_length.items())
        out.print(f"learned {family} (trained at L={trained}): {accuracies}", highlight=False)
    rotations = rotation.learned_rotations(tracker, name, budgets)
    for (trained, seed), turned in sorted(rotations.items()):
        out.print(
            f"learned {rotation.SCAN_FAMILY} (trained at L={trained}, seed {seed}): "
            f"8 theta(1)/2 pi = {turned['turn']:.5f}, theta(0) = {turned['phase0']:+.2e} rad, "
            f"r = {turned['r0']:.6f} / {turned['r1']:.6f}: the count holds about "
            f"{turned['holds']:,.0f} steps",
            highlight=False,
        )
    run_id = rotation.record(tracker, name, scores, found, rotations, examples)
    out.print(
        f"probe run {run_id}: {len(scores)} constructions beside {len(found)} learned models",
        highlight=False,
    )


@probe_app.command("cost")
@user_errors
def probe_cost(
    task: Annotated[str, typer.Option(help="Task the models are built for.")] = cost.TASK,
    families: FamiliesOption = None,
    lengths: LengthsOption = None,
    batch_size: Annotated[int, typer.Option(help="Batch size, fixed across lengths.")] = cost.BATCH,
    steps: Annotated[
        int | None,
        typer.Option(help="Timed training steps per length; their median is the step's time."),
    ] = None,
    memory_cap_gb: Annotated[
        float, typer.Option(help="Stop a family whose worker's resident memory passes this.")
    ] = cost.MEMORY_CAP_GB,
    precision: Annotated[
        str, typer.Option(help="fp32, or bf16 (mixed bfloat16, fused attention allowed).")
    ] = "fp32",
    suite: SuiteOption = "quick",
    experiment: ExperimentOption = None,
    tracking_uri: TrackingUri = None,
):
    """Time and peak memory per training step versus length; exponents and the crossover."""
    families = parse_names(families, cost.FAMILIES)
    lengths = parse_lengths(lengths, cost.LENGTHS)
    steps = cost.STEPS if steps is None else steps
    cost.check(task, families, lengths, batch_size, steps, memory_cap_gb, precision)
    tracker, name = _probe_store(tracking_uri, suite, experiment)

    def show(family, line):
        if "length" in line:
            out.print(
                f"{family} L={line['length']}: {line['seconds'] * 1000:.1f} ms/step, "
                f"{line['memory_mb']:.1f} MiB",
                highlight=False,
            )
        elif "oom" in line:
            out.print(f"{family} L={line['oom']}: out of memory", highlight=False)

    run_id = cost.start(tracker, name, task, batch_size, steps, precision)
    costs, interrupted = [], False
    try:
        for family in families:
            costs.append(
                cost.run_family(
                    task, family, lengths, batch_size, steps, memory_cap_gb, show, precision,
                    COMPILE_CACHE,
                )
            )  # fmt: skip
    except KeyboardInterrupt:  # the families finished are recorded
        interrupted = True
    except RuntimeError as error:
        tracker.finish(run_id, "FAILED")
        raise UserError(str(error)) from None
    if not costs:
        tracker.finish(run_id, "KILLED")
        err.print(f"interrupted before any family was measured: probe run {run_id} killed")
        raise typer.Exit(130)
    length, kind = cost.record(tracker, run_id, costs)
    table = Table("family", "time exponent", "memory exponent", "out of memory at")
    for c in costs:
        table.add_row(
            c.family,
            f"{c.time_exponent:.2f}",
            f"{c.memory_exponent:.2f}",
            "-" if c.oom is None else f"L={c.oom}",
        )
    out.print(table)
    out.print(
        f"crossover ({cost.ATTENTION} slower than {cost.RECURRENT}): "
        + (f"L={length:.0f} ({kind})" if length == length else kind),
        highlight=False,
    )
    out.print(f"probe run {run_id} in experiment '{name}' ({tracker.uri})", highlight=False)
    if interrupted:
        err.print(
            f"interrupted: recorded the families finished ({', '.join(c.family for c in costs)})"
        )
        raise typer.Exit(130)


@probe_app.command("report")
@user_errors
def probe_report(
    suite: ReadSuite = None,
    experiment: ReadExperiment = None,
    tracking_uri: TrackingUri = None,
    out_dir: OutDir = Path("reports/probes"),
):
    """Write the probes' report (probes.md, index.html, figures) from their latest runs."""
    from harness.probes import report as probes_report

    tracker, name = reading(tracking_uri, suite, experiment)
    writable_dir(out_dir, "output folder")
    written = probes_report.build(
        tracker, name, out_dir, lambda line: out.print(line, highlight=False)
    )
    out.print(
        f"wrote {written.leaderboard}, {written.html} and {len(written.figures)} figures",
        highlight=False,
    )
