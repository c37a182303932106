"""The probes' report: each probe's latest run as a section with its figure, written to its own
folder (reports/probes/ by `make probes`), apart from the leaderboard.

Each section reads what its probe recorded (harness/probes/cost.py, gradients.py,
rotation.py) and draws with the report's kit (harness/figures.py); harness/report/
imports no probe back. The three sections stay in this one module: a probe's record and
the page that shows it change together, and the page is one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from harness import figures
from harness.errors import UserError
from harness.probes import ProbeRun, gradients, latest_probes, rotation
from harness.report import render
from harness.report.read import experiment_runs
from harness.report.tables import Section, Table, amount, number
from harness.tracking import Tracker

SERIES = ("grad_norm/", "step_seconds/", "step_memory_mb/", "test_accuracy/", "sequence_accuracy/")
"""Probe metrics whose history (one value per distance or length) a section reads."""
CAPTIONS = {
    "gradient_flow": "Gradient flow: the mean norm of d(loss at the last step)/d(x_t) versus the "
    "distance from the last step, log scale, at initialisation and after training.",
    "rotation_oracle": "Counting mod 8: the hand-set rotation counters (weights set, not "
    "learned) beside the learned models, each tested on the same sequences at every length.",
    "cost_scaling": "Cost scaling: seconds and peak memory per training step versus length, "
    "log-log, fitted exponents in the legend; dotted: the crossover the title names, where one "
    "family's step becomes slower than the other's.",
}


def build(
    tracker: Tracker,
    experiment: str,
    out: Path,
    progress: Callable[[str], None] = lambda line: None,
):
    """Write probes.md, index.html and figures/*.png for the experiment's probes under `out`."""
    probes = latest_probes(tracker, experiment_runs(tracker, experiment, progress), SERIES)
    sections = []
    for name, section in SECTIONS.items():
        if name in probes:
            progress(f"building the {name} probe's section")
            sections.append(section(probes[name]))
    if not sections:
        raise UserError(
            f"experiment '{experiment}' holds no finished probe run: run `make probes` "
            "(or `harness probe gradients|rotation|cost`) first"
        )
    doc = render.Document(
        f"Probes: {experiment}",
        [
            "What the probes measured, each from its latest finished run in MLflow experiment "
            f"{experiment}: the mechanisms behind the leaderboard (gradient flow, counting by "
            "a construction, cost per step)."
        ],
        sections=sections,
        captions=CAPTIONS,
    )
    return render.write(doc, out, "probes.md", progress)


def gradients_section(probe: ProbeRun) -> Section:
    """Decay per step and the share of the signal reaching the first input, per family."""
    rows = []
    for key, points in probe.series.items():
        kind, *rest = key.split("/")
        if kind != "grad_norm" or len(rest) != 3:
            continue
        family, length, stage = rest[0], int(rest[1].removeprefix("L")), rest[2]
        rows += [(family, length, stage, step, value) for step, value in points]
    curves = pd.DataFrame(rows, columns=["family", "length", "stage", "distance", "norm"])
    table = Table(
        [
            "family",
            "length",
            "decay per step, init",
            "decay per step, trained",
            "first input / last, init",
            "first input / last, trained",
        ],
        [],
    )
    combos = curves[["family", "length"]].drop_duplicates().sort_values(["family", "length"])
    for family, length in combos.itertuples(index=False):
        name = f"{family}/L{length}"
        table.rows.append(
            [
                family,
                str(length),
                number(probe.metrics.get(f"decay_per_step/{name}/init", np.nan)),
                number(probe.metrics.get(f"decay_per_step/{name}/trained", np.nan)),
                number(probe.metrics.get(f"first_input_ratio/{name}/init", np.nan), 3),
                number(probe.metrics.get(f"first_input_ratio/{name}/trained", np.nan), 3),
            ]
        )
    sources = sorted(
        f"{k.removeprefix('source/')}: {v}"
        for k, v in probe.params.items()
        if k.startswith("source/")
    )
    predicted, words = prediction_table(probe)
    paragraphs = [
        f"Task {probe.params.get('task', '?')}, {probe.params.get('batch_size', '?')} examples. "
        "The decay per step is exp(slope) of log-norm fitted against the distance from the last "
        "step: a recurrence that keeps a fraction rho of the signal per step gives rho, and "
        "rho^(L-1) reaches the first input. 'First input / last' is that fraction as measured. "
        f"Machine: {probe.machine}.",
        "Trained models: " + "; ".join(sources) + "." if sources else "",
        *words,
    ]
    tables = [("Decay of the gradient signal per step of distance:", table)]
    if predicted.rows:
        tables.append(
            (
                "First input / last, predicted from the model's Jacobians and measured by "
                "backpropagation (agreement: log10 of predicted over measured):",
                predicted,
            )
        )
    return Section(
        "Gradient flow",
        [p for p in paragraphs if p],
        tables,
        [
            (
                "probe_gradient_flow.png",
                "gradient_flow",
                figures.Drawing(gradient_flow, (curves,)),
            )
        ]
        if not curves.empty
        else [],
    )


def prediction_table(probe: ProbeRun) -> tuple[Table, list[str]]:
    """The predicted and measured first-input ratios per (family, length, stage), and what
    they say in words: where the prediction holds, where it fails, with the numbers."""
    table = Table(
        ["family", "length", "stage", "method", "predicted", "measured", "agreement", "‖ΠJ‖₂"],
        [],
    )
    methods = {
        k.removeprefix("prediction/"): v
        for k, v in probe.params.items()
        if k.startswith("prediction/")
    }
    if not methods:  # a run recorded before the prediction
        return table, []
    keys = sorted(
        {tuple(k.split("/")[1:]) for k in probe.metrics if k.startswith("first_input_ratio/")},
        key=lambda k: (k[0], int(k[1].removeprefix("L")), gradients.STAGES.index(k[2])),
    )
    holds, fails, unpredicted = [], [], set()
    measured_at = {}
    for family, length, stage in keys:
        name = f"{family}/{length}/{stage}"
        measured = probe.metrics.get(f"first_input_ratio/{name}", np.nan)
        predicted = probe.metrics.get(f"predicted_ratio/{name}", np.nan)
        agreement = probe.metrics.get(f"agreement/{name}", np.nan)
        method = methods.get(family, "")
        measured_at[(family, length, stage)] = measured
        if method.startswith(gradients.NOT_PREDICTED):
            unpredicted.add(f"{family} ({method.removeprefix(gradients.NOT_PREDICTED + ': ')})")
        elif np.isfinite(agreement):
            said = f"{family} {length} {stage}: {predicted:.3g} vs {measured:.3g}"
            (holds if abs(agreement) <= gradients.AGREES else fails).append(
                f"{said} ({agreement:+.2f})"
            )
        table.rows.append(
            [
                family,
                length.removeprefix("L"),
                stage,
                method.removeprefix(gradients.NOT_PREDICTED + ": ") if method else "",
                number(predicted, 3),
                number(measured, 3),
                f"{agreement:+.2f}" if np.isfinite(agreement) else "—",
                number(probe.metrics.get(f"jacobian_chain_norm/{name}", np.nan), 3),
            ]
        )
    words = [
        "The prediction uses no backpropagation through time: along the forward trajectory "
        "of the test batch, simple_rnn, lstm and gru multiply the exact state Jacobians "
        "ds_t/ds_{t-1} of their cell's step (gates included) as a matrix chain, and apply it "
        "to the loss's gradient at the last state and the input Jacobians at steps 1 and T: "
        "the same quantity backpropagation measures, so it should agree to rounding. The "
        "scan families' chain is diag(a_2 ... a_T): their prediction is its operator norm, "
        "the largest channel's |a_2 ... a_T| (‖ΠJ‖₂ for all: the chain alone, loss-free), "
        "which leaves the input, norm and read-out Jacobians out. A prediction holds when "
        f"its agreement lies within ±{gradients.AGREES:g} (within a factor of "
        f"{10**gradients.AGREES:g} either way)."
    ]
    if holds:
        words.append("It holds for " + "; ".join(holds) + ".")
    if fails:
        words.append("It fails for " + "; ".join(fails) + ".")
    if unpredicted:
        words.append("Not predicted: " + "; ".join(sorted(unpredicted)) + ".")
    faster = [
        f"L={length.removeprefix('L')}: {measured_at[('gru', length, 'init')]:.3g} "
        f"vs {measured_at[('simple_rnn', length, 'init')]:.3g}"
        for _, length, stage in keys
        if stage == "init"
        and ("gru", length, "init") in measured_at
        and ("simple_rnn", length, "init") in measured_at
        and measured_at[("gru", length, "init")] < measured_at[("simple_rnn", length, "init")]
    ]
    faster = list(dict.fromkeys(faster))
    if faster:
        words.append(
            "At initialisation the GRU's signal decays faster than the SimpleRNN's "
            "(first input / last, GRU vs SimpleRNN, " + "; ".join(faster) + ")."
        )
    return table, words


def gradient_flow(curves: pd.DataFrame) -> Figure:
    """Gradient norm versus distance from the last step (log y), a panel per stage and length.

    `curves` has columns family, length, stage, distance, norm.
    """
    palette = figures.family_colors(curves["family"])
    stages = [s for s in gradients.STAGES if s in set(curves["stage"])]
    lengths = sorted(curves["length"].unique())
    fig, axes = figures.new(len(stages), len(lengths), 4.4, 3.2, margins=(0.8, 0.2, 0.65, 0.55))
    for r, stage in enumerate(stages):
        for c, length in enumerate(lengths):
            ax = axes[r, c]
            rows = curves[(curves["stage"] == stage) & (curves["length"] == length)]
            for family, group in rows.groupby("family", sort=True):
                group = group.sort_values("distance")
                ax.plot(
                    group["distance"],
                    group["norm"].where(group["norm"] > 0),
                    color=palette[family],
                    lw=1.3,
                    label=figures.text(family),
                )
            ax.set_yscale("log")
            ax.set_title(f"L={length}, {'at initialisation' if stage == 'init' else 'trained'}")
            ax.set_xlabel("distance from the last step (steps)")
            if c == 0:
                ax.set_ylabel("mean ||d loss / d x_t|| (log scale)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Gradient flow: d(loss at the last step) / d x_t")
    return fig


def rotation_section(probe: ProbeRun) -> Section:
    """The hand-set counters' accuracy beside each learned model's, on the same test data, and
    the rotations the learned rotscan models apply."""
    curves = {}  # label -> {test length: accuracy}
    constructions = {}  # construction -> {test length: accuracy}
    for key, points in probe.series.items():
        parts = key.split("/")
        if parts[0] != "test_accuracy":
            continue
        if len(parts) == 2:
            constructions[parts[1]] = dict(points)
            what = rotation.CONSTRUCTIONS.get(parts[1], parts[1])
            curves[f"{parts[1]}: {what}, weights set"] = dict(points)
        else:
            curves[f"{parts[1]} (trained at L={parts[2].removeprefix('L')})"] = dict(points)
    tested = sorted({L for points in curves.values() for L in points})
    table = Table(["model", *(f"L={L}" for L in tested)], [])
    for label, points in sorted(
        curves.items(), key=lambda item: ("weights set" not in item[0], item[0])
    ):
        table.rows.append([label, *(number(points[L]) if L in points else "" for L in tested)])
    exact = bool(constructions) and all(
        v == 1.0 for points in constructions.values() for v in points.values()
    )
    longest = max(tested) if tested else None
    paragraphs = [
        "Two hand-set counters rotate a state by 2π/8 on every 1 (and leave it on a 0) and read "
        "its angle out with a fixed Dense layer: the seed's linear recurrence on a 2-D state "
        f"stepped by an RNN cell ({probe.params.get('parameters', '?')} weights), and the same "
        "rotation computed by the rotscan family's layer with a parallel scan "
        f"({probe.params.get(f'parameters_{rotation.COUNTER}', '?')} weights). Every weight is "
        "set by hand, none learned: constructions, shown apart from the searched families. "
        "Their per-step accuracy is "
        + ("exactly 1 at every length tested" if exact else "below 1 somewhere: see the table")
        + (f" (longest: L={longest})" if longest else "")
        + ". Beside them, the store's learned counting models (the best model of each cell), "
        f"scored on the same {probe.params.get('examples', '?')} test sequences per length "
        "(— where one sequence does not fit the evaluation's memory). "
        f"Machine: {probe.machine}.",
    ]
    tables = [("Per-step accuracy on counting by test length:", table)]
    rotations = learned_rotations(probe.metrics)
    if rotations:
        paragraphs.append(
            "What each learned rotscan model rotates by: its first RotScan layer's channel "
            "nearest the counter (θ(0) = 0, θ(1) an odd multiple of 2π/8, r = 1). A count read "
            "from that channel drifts by its phase error per step and is read wrong after π/8 "
            "of drift, or forgotten within about 1/(1 - r) steps: 'holds' is the shorter."
        )
        tables.append(("Learned rotations (rotscan, counting):", rotations))
    return Section(
        "Counting by rotation",
        paragraphs,
        tables,
        [
            (
                "probe_rotation_oracle.png",
                "rotation_oracle",
                figures.Drawing(rotation_vs_learned, (curves,)),
            )
        ],
    )


def learned_rotations(metrics: dict[str, float]) -> Table | None:
    """The rotation metrics of the learned rotscan models, a row per (training length, seed)."""
    prefix = f"{rotation.SCAN_FAMILY}_"
    by_model: dict[tuple[int, int], dict[str, float]] = {}
    for key, value in metrics.items():
        what, _, rest = key.removeprefix(prefix).partition("/")
        if not key.startswith(prefix) or what not in rotation.ROTATION_METRICS:
            continue
        length, seed = rest.split("/")
        by_model.setdefault((int(length[1:]), int(seed[4:])), {})[what] = value
    if not by_model:
        return None
    header = ["trained at", "seed", "8θ(1)/2π", "θ(0) (rad)", "r(0)", "r(1)", "phase error (rad)"]
    table = Table([*header, "holds (steps)"], [])
    for (length, seed), r in sorted(by_model.items()):
        table.rows.append(
            [
                f"L={length}",
                str(seed),
                f"{r['turn']:.5f}",
                f"{r['phase0']:+.1e}",
                f"{r['r0']:.6f}",
                f"{r['r1']:.6f}",
                f"{r['phase_error']:.1e}",
                f"{r['holds']:,.0f}",
            ]
        )
    return table


def rotation_vs_learned(curves: dict[str, dict[int, float]]) -> Figure:
    """Counting accuracy versus test length: the rotation oracle beside the learned models.

    `curves` maps a label to {test length: accuracy}; the oracle's label says "weights set".
    """
    palette = figures.family_colors(curves)
    fig, axes = figures.new()
    ax = axes[0, 0]
    tested = []
    for label, points in sorted(curves.items()):
        oracle = "weights set" in label
        xs, ys = zip(*sorted(points.items()), strict=True)
        tested += list(xs)
        ax.plot(
            xs,
            ys,
            marker="s" if oracle else "o",
            ls="-" if oracle else "--",
            lw=2.2 if oracle else 1.5,
            color=palette[label],
            zorder=1 if oracle else 3,
            label=figures.text(label),
        )
    figures.length_axis(ax, tested, "test length (log scale)")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("per-step accuracy (higher is better)")
    ax.set_title("counting mod 8: rotation oracle versus learned models")
    ax.legend(fontsize=7)
    return fig


def cost_section(probe: ProbeRun) -> Section:
    """Time and memory per step by length, their exponents, and the crossover of the two
    families the probe compared."""
    rows = []
    for key, points in probe.series.items():
        kind, family = key.split("/", 1)
        column = "seconds" if kind == "step_seconds" else "memory_mb"
        rows += [(family, step, column, value) for step, value in points]
    frame = pd.DataFrame(rows, columns=["family", "length", "column", "value"])
    costs = (
        frame.pivot_table(index=["family", "length"], columns="column", values="value")
        .reindex(columns=["seconds", "memory_mb"])
        .reset_index()
        .sort_values(["family", "length"])
    )
    families = sorted(costs["family"].unique())
    slopes = {
        f: (
            probe.metrics.get(f"time_exponent/{f}", np.nan),
            probe.metrics.get(f"memory_exponent/{f}", np.nan),
        )
        for f in families
    }
    oom = {
        f: int(probe.metrics[f"out_of_memory_length/{f}"])
        for f in families
        if f"out_of_memory_length/{f}" in probe.metrics
    }
    crossover = probe.metrics.get("crossover_length", np.nan)
    kind = probe.params.get("crossover", "")
    what, _, how = kind.partition(": ")
    summary = Table(["family", "time exponent", "memory exponent", "out of memory at"], [])
    for f in families:
        summary.rows.append(
            [
                f,
                number(slopes[f][0], 3),
                number(slopes[f][1], 3),
                f"L={oom[f]}" if f in oom else "—",
            ]
        )
    lengths = sorted(costs["length"].unique())
    detail = Table(["length", *(f"{f}: ms / MiB" for f in families)], [])
    for length in lengths:
        cells = []
        for f in families:
            match = costs[(costs["family"] == f) & (costs["length"] == length)]
            if match.empty:
                cells.append("out of memory" if oom.get(f) == length else "")
            else:
                seconds, memory = match.iloc[0]["seconds"], match.iloc[0]["memory_mb"]
                cells.append(f"{amount(seconds * 1000)} / {amount(memory)}")
        detail.rows.append([str(length), *cells])
    timing = (
        f"the median of {probe.params['timed_steps']} timed training steps (each waited for on "
        f"the device) after {probe.params['warmup_steps']} warm-up steps"
        if "warmup_steps" in probe.params  # a run whose steps were waited for on the device
        else "recorded before 2026-11-26: steps timed without waiting for the device, and a "
        "step whose device work failed could look fast (see README, GPU runs); not to be "
        "trusted on a GPU"
    )
    paragraphs = [
        f"Task {probe.params.get('task', '?')}, batch size {probe.params.get('batch_size', '?')}, "
        f"{timing}, in {probe.params.get('precision', 'fp32')}. Exponents: slope of log(value) on log(length) over the longer half of "
        f"the lengths. Memory: {probe.params.get('memory_method', '?')}. "
        f"Machine: {probe.machine}.",
        (
            f"Crossover: {what} from L≈{crossover:.0f} ({how})."
            if np.isfinite(crossover)
            else f"Crossover: {kind or 'not measured'}."
        ),
    ]
    return Section(
        "Cost scaling",
        paragraphs,
        [("Fitted exponents of length:", summary), ("Per training step:", detail)],
        [
            (
                "probe_cost_scaling.png",
                "cost_scaling",
                figures.Drawing(cost_scaling, (costs, slopes, oom, crossover, what, how)),
            )
        ],
    )


def cost_scaling(
    costs: pd.DataFrame,
    slopes: dict[str, tuple[float, float]],
    oom: dict[str, int],
    crossover: float,
    crossing: str,
    crossover_kind: str,
) -> Figure:
    """Seconds and MiB per training step versus length, log-log, a panel each.

    `costs` has columns family, length, seconds, memory_mb; `slopes` maps a family to its
    (time, memory) exponents; `oom` the first length that ran out of memory; `crossing` says
    which family became slower than which at `crossover` (as the probe recorded it).
    """
    palette = figures.family_colors(costs["family"])
    crossed = np.isfinite(crossover)  # a dotted line and a second title line
    fig, axes = figures.new(
        1, 2, 5.0, 3.8, margins=(0.85, 0.2, 0.8 if crossed else 0.55, 0.55), gaps=(1.05, 0)
    )
    panels = (("seconds", 0, "seconds per training step"), ("memory_mb", 1, "peak MiB per step"))
    for column, index, label in panels:
        ax = axes[0, index]
        for family, group in costs.groupby("family", sort=True):
            group = group[group[column] > 0].sort_values("length")
            if group.empty:
                continue
            name = f"{figures.text(family)} (slope {slopes[family][index]:.2f})"
            if family in oom:
                name += f", out of memory at {oom[family]}"
            ax.plot(group["length"], group[column], marker="o", color=palette[family], label=name)
        if crossed:
            ax.axvline(crossover, color="k", ls=":", lw=1.2)
        figures.length_axis(ax, costs["length"], "sequence length (log scale)")
        ax.set_yscale("log")
        ax.set_ylabel(f"{label} (log scale)")
        ax.legend(fontsize=7, loc="upper left")
    title = "Cost versus length (slope = exponent of L)"
    if crossed:
        title += (
            f"\ndotted: {figures.text(crossing)} from L={crossover:.0f} "
            f"({figures.text(crossover_kind)})"
        )
    fig.suptitle(title)
    return fig


SECTIONS = {"gradients": gradients_section, "rotation": rotation_section, "cost": cost_section}
"""Each probe's section, in the report's order."""
