"""The commands that read a store: `harness status`, `report`, `verify` and `ui`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from harness import api
from harness.cli.options import OutDir, ReadExperiment, ReadSuite, TrackingUri, note_latest
from harness.cli.root import COMPILE_CACHE, app, err, out, user_errors


@app.command()
@user_errors
def status(
    suite: ReadSuite = None,
    experiment: ReadExperiment = None,
    tracking_uri: TrackingUri = None,
):
    """Show each cell: done, partial (k of n trials), diverged, failed or not started, and
    each running trial's epoch, validation score and seconds per epoch.

    Read from the tracking store alone, so it shows the progress of every
    machine and shard logging to it.
    """
    state = api.status(tracking_uri, experiment=experiment, suite=suite)
    note_latest(suite, experiment, state.experiment)
    table = Table("cell", "state", "trials", "test score", title=f"experiment {state.experiment}")
    counts: dict[str, int] = {}
    trials_done = trials_planned = 0
    running: list[str] = []
    for cell in state.cells:
        counts[cell.state] = counts.get(cell.state, 0) + 1
        trials_done += cell.trials_done
        trials_planned += cell.trials_planned
        result = cell.result
        score = result.verdict.text() if result is not None and result.seed_scores else "-"
        table.add_row(cell.label, cell.state, f"{cell.trials_done} of {cell.trials_planned}", score)
        running += [f"running: {cell.label} {line}" for line in cell.running]
    out.print(table)
    for line in running:
        out.print(line, highlight=False, markup=False)
    for line in state.frontiers:
        out.print(line, highlight=False)
    cells_line = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    out.print(
        f"{cells_line or 'no cells'}; {trials_done} of {trials_planned} trials", highlight=False
    )


@app.command()
@user_errors
def ui(
    tracking_uri: TrackingUri = None,
    host: Annotated[
        str, typer.Option(help="Interface to listen on (0.0.0.0 only if you mean it).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 5000,
):
    """Start the MLflow UI on the harness's store."""
    from harness.tracking import Tracker

    tracker = Tracker(tracking_uri)
    tracker.check()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracker.uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",  # one local user: starts in seconds rather than four processes' worth
    ]
    out.print(f"MLflow UI on http://{host}:{port} for {tracker.uri}", highlight=False)
    os.execv(sys.executable, command)


@app.command()
@user_errors
def report(
    suite: ReadSuite = None,
    experiment: ReadExperiment = None,
    tracking_uri: TrackingUri = None,
    out_dir: OutDir = Path("reports"),
    readme: Annotated[
        bool,
        typer.Option(
            "--update-readme",
            help="Also refresh the leaderboard between the markers of ./README.md.",
        ),
    ] = False,
    readme_block: Annotated[
        str,
        typer.Option(
            help="Which README block --update-readme refreshes: the one between "
            "<!-- NAME:start --> and <!-- NAME:end -->.",
        ),
    ] = "leaderboard",
):
    """Write leaderboard.md, index.html and figures from the MLflow store alone."""
    reported = api.report(
        tracking_uri,
        out_dir,
        experiment=experiment,
        suite=suite,
        readme=Path("README.md") if readme else None,
        readme_block=readme_block,
        progress=lambda line: out.print(line, highlight=False),
    )
    note_latest(suite, experiment, reported.experiment)
    out.print(
        f"wrote {reported.leaderboard}, {reported.html} and {len(reported.figures)} figures "
        f"in {out_dir / 'figures'}",
        highlight=False,
    )
    if reported.readme_changed is not None:
        out.print(
            f"README.md: {readme_block} block "
            f"{'updated' if reported.readme_changed else 'unchanged'}",
            highlight=False,
        )


@app.command()
@user_errors
def verify(
    suite: ReadSuite = None,
    experiment: ReadExperiment = None,
    tracking_uri: TrackingUri = None,
    part: Annotated[
        str | None,
        typer.Option(help="Only the cells of this part of --suite (and its frontiers' cells)."),
    ] = None,
):
    """Recompute every score the report would show from the stored models; exit 1 on a mismatch.

    Reads the store alone (models downloaded, test data regenerated from the recorded
    seeds and sizes); never trains, and reads nothing of the working directory but the
    JAX compilation cache a run left there (data/jax-cache), if any. A store whose
    cells all diverged or failed has nothing to check: it says so and exits 0.
    """
    from harness.verify import ABSOLUTE, RELATIVE, cell_label

    checked = api.verify(
        tracking_uri,
        experiment=experiment,
        suite=suite,
        part=part,
        compile_cache=COMPILE_CACHE,
        progress=lambda line: err.print(line, highlight=False),
    )
    name = checked.experiment
    note_latest(suite, experiment, name)
    table = Table("run", "cell", "metric", "stored", "recomputed", "ok", title=f"verify {name}")
    for check in checked.checks:
        table.add_row(
            check.run_id[:8],
            check.cell,
            check.metric,
            f"{check.stored:.6g}",
            f"{check.recomputed:.6g}" if not check.note else check.note,
            ("yes (near-ties)" if check.by_near_ties else "yes") if check.ok else "NO",
        )
    if checked.checks:
        out.print(table)
    for cell in checked.unscored:
        out.print(
            f"not checked: run {cell.run_id[:8]} ({cell_label(cell)}), "
            f"{cell.state.value}: no trial finished, so no score was stored",
            highlight=False,
            markup=False,
        )
    for check in checked.mismatches:
        err.print(
            f"mismatch: run {check.run_id} ({check.cell}) {check.metric}: stored "
            f"{check.stored:.6g}, " + (check.note or f"recomputed {check.recomputed:.6g}"),
            highlight=False,
            markup=False,
        )
    if not checked.ok:
        raise typer.Exit(1)
    if not checked.checks:
        out.print(
            f"nothing was checked: experiment '{name}' holds no cell with a stored score "
            f"({len(checked.unscored)} diverged or failed)",
            highlight=False,
        )
        return
    cells = len({c.run_id for c in checked.checks})
    unscored = f"; {len(checked.unscored)} diverged or failed" if checked.unscored else ""
    ties = sum(check.by_near_ties for check in checked.checks)
    ties = f"; {ties} within the range of their near-ties" if ties else ""
    out.print(
        f"verified {len(checked.checks)} numbers of {cells} cells in experiment '{name}': all "
        f"agree (within {ABSOLUTE:g} + {RELATIVE:g} x |stored|{ties})"
        f"{unscored}",
        highlight=False,
    )
