"""The probes' report: each probe's latest run as a section, written to its own folder
(reports/probes/ by `make probes`), apart from the leaderboard."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.errors import UserError
from harness.probes import latest_probes
from harness.tracking import Tracker

SERIES = ("grad_norm/", "step_seconds/", "step_memory_mb/", "test_accuracy/", "sequence_accuracy/")
"""Probe metrics whose history (one value per distance or length) a section reads."""
CAPTIONS = {
    "gradient_flow": "Gradient flow: the mean norm of d(loss at the last step)/d(x_t) versus the "
    "distance from the last step, log scale, at initialisation and after training.",
    "rotation_oracle": "Counting mod 8: the hand-built rotation counter (weights set, not "
    "learned) beside the learned models, each tested on the same sequences at every length.",
    "cost_scaling": "Cost scaling: seconds and peak memory per training step versus length, "
    "log-log, fitted exponents in the legend; dotted: where attention becomes slower than an "
    "LSTM.",
}


def build(
    tracker: Tracker,
    experiment: str,
    out: Path,
    progress: Callable[[str], None] = lambda line: None,
):
    """Write probes.md, index.html and figures/*.png for the experiment's probes under `out`."""
    from harness.probes import cost, gradients, rotation
    from harness.report import render
    from harness.report.read import experiment_runs

    probes = latest_probes(tracker, experiment_runs(tracker, experiment, progress), SERIES)
    owners = {"gradients": gradients, "rotation": rotation, "cost": cost}
    sections = []
    for name, module in owners.items():
        if name in probes:
            progress(f"building the {name} probe's section")
            sections.append(module.section(probes[name]))
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
