"""`harness probe`: gradient flow, the rotation oracle, cost scaling, and their report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from harness import api
from harness.cli.options import (
    FamiliesOption,
    LengthsOption,
    OutDir,
    ReadExperiment,
    ReadSuite,
    TrackingUri,
    note_latest,
    parse_lengths,
    parse_names,
)
from harness.cli.root import COMPILE_CACHE, app, err, out, user_errors
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


def _shown(line: str) -> None:
    out.print(line, highlight=False)


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
    """Norm of d(loss at the last step)/d(x_t) by distance, at initialisation and after training,
    and the first input's share predicted from the model's state Jacobians beside the measured one."""
    probed = api.probe_gradients(
        task=task,
        families=parse_names(families, gradients.FAMILIES),
        lengths=parse_lengths(lengths, gradients.LENGTHS),
        batch_size=batch_size,
        train_epochs=train_epochs,
        suite=suite,
        experiment=experiment,
        store=tracking_uri,
        compile_cache=COMPILE_CACHE,
        progress=_shown,
    )
    _shown(f"probe run {probed.run_id} in experiment '{probed.experiment}' ({probed.store})")


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
    probed = api.probe_rotation(
        lengths=parse_lengths(lengths, ()) or None,  # None: the probe's (rotation imports Keras)
        examples=examples,
        suite=suite,
        experiment=experiment,
        store=tracking_uri,
        compile_cache=COMPILE_CACHE,
    )
    from harness.probes import rotation  # Keras is loaded now

    table = Table(
        "construction", "length", "per-step accuracy", "sequence accuracy", title="weights set"
    )
    for construction, by_length in probed.scores.items():
        for length, score in by_length.items():
            accuracy, sequences = score["accuracy"], score["sequence_accuracy"]
            table.add_row(construction, str(length), f"{accuracy:.4f}", f"{sequences:.4f}")
    out.print(table)
    for (family, trained), by_length in sorted(probed.learned.items()):
        accuracies = ", ".join(f"L={L} {a:.4f}" for L, a in by_length.items())
        out.print(f"learned {family} (trained at L={trained}): {accuracies}", highlight=False)
    for (trained, seed), turned in sorted(probed.rotations.items()):
        out.print(
            f"learned {rotation.SCAN_FAMILY} (trained at L={trained}, seed {seed}): "
            f"8 theta(1)/2 pi = {turned['turn']:.5f}, theta(0) = {turned['phase0']:+.2e} rad, "
            f"r = {turned['r0']:.6f} / {turned['r1']:.6f}: the count holds about "
            f"{turned['holds']:,.0f} steps",
            highlight=False,
        )
    out.print(
        f"probe run {probed.run_id}: {len(probed.scores)} constructions beside "
        f"{len(probed.learned)} learned models",
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
    probed = api.probe_cost(
        task=task,
        families=parse_names(families, cost.FAMILIES),
        lengths=parse_lengths(lengths, cost.LENGTHS),
        batch_size=batch_size,
        steps=steps,
        memory_cap_gb=memory_cap_gb,
        precision=precision,
        suite=suite,
        experiment=experiment,
        store=tracking_uri,
        compile_cache=COMPILE_CACHE,
        progress=_shown,
    )
    if not probed.costs:
        err.print(f"interrupted before any family was measured: probe run {probed.run_id} killed")
        raise typer.Exit(130)
    table = Table("family", "time exponent", "memory exponent", "out of memory at")
    for c in probed.costs:
        table.add_row(
            c.family,
            f"{c.time_exponent:.2f}",
            f"{c.memory_exponent:.2f}",
            "-" if c.oom is None else f"L={c.oom}",
        )
    out.print(table)
    length, kind = probed.crossover, probed.crossover_kind
    out.print(
        f"crossover ({cost.ATTENTION} slower than {cost.RECURRENT}): "
        + (f"L={length:.0f} ({kind})" if length == length else kind),
        highlight=False,
    )
    _shown(f"probe run {probed.run_id} in experiment '{probed.experiment}' ({probed.store})")
    if probed.interrupted:
        err.print(
            "interrupted: recorded the families finished "
            f"({', '.join(c.family for c in probed.costs)})"
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
    reported = api.probe_report(
        tracking_uri, out_dir, experiment=experiment, suite=suite, progress=_shown
    )
    note_latest(suite, experiment, reported.experiment)
    _shown(f"wrote {reported.leaderboard}, {reported.html} and {len(reported.figures)} figures")
