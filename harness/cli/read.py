"""The commands that read a store: `harness status`, `report`, `verify` and `ui`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from harness import backend
from harness.cli.options import OutDir, ReadExperiment, ReadSuite, TrackingUri, reading
from harness.cli.root import COMPILE_CACHE, app, err, out, user_errors, writable_dir
from harness.errors import UserError


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
    from harness.cells import cell_states, frontier_states
    from harness.suites import load_suite

    plan = load_suite(suite) if suite else None
    tracker, name = reading(tracking_uri, suite, experiment, runs_only=True)
    table = Table("cell", "state", "trials", "test score", title=f"experiment {name}")
    counts: dict[str, int] = {}
    trials_done = trials_planned = 0
    running: list[str] = []
    listed = plan.cells if plan and not plan.frontiers else None  # frontiers pick cells as they go
    for found in cell_states(tracker, name, listed):
        counts[found.state] = counts.get(found.state, 0) + 1
        trials_done += found.trials_done
        trials_planned += found.trials_planned
        result = found.result
        score = result.verdict.text() if result is not None and result.seed_scores else "-"
        table.add_row(
            found.label, found.state, f"{found.trials_done} of {found.trials_planned}", score
        )
        running += [f"running: {found.label} {line}" for line in found.running]
    out.print(table)
    for line in running:
        out.print(line, highlight=False, markup=False)
    for line in frontier_states(tracker, name):
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
    from harness import frontier_report
    from harness import report as reporting

    tracker, name = reading(tracking_uri, suite, experiment, runs_only=True)
    writable_dir(out_dir, "output folder")
    written = reporting.build(
        tracker,
        name,
        out_dir,
        lambda line: out.print(line, highlight=False),
        features=[frontier_report.section],
    )
    out.print(
        f"wrote {written.leaderboard}, {written.html} and {len(written.figures)} figures "
        f"in {out_dir / 'figures'}",
        highlight=False,
    )
    if readme:
        changed = reporting.update_readme(Path("README.md"), written.leaderboard, readme_block)
        out.print(
            f"README.md: {readme_block} block {'updated' if changed else 'unchanged'}",
            highlight=False,
        )


def part_keys(suite: str | None, part: str | None) -> set[str] | None:
    """The keys of the cells and frontiers of `part` of `suite` (None: no part named)."""
    if part is None:
        return None
    if suite is None:
        raise UserError("--part names a part of a suite: give --suite too")
    from harness.cells import select_cells

    _, cells, frontiers = select_cells(suite, (), (), (), {}, None, None, None, part)
    return {item.key for item in (*cells, *frontiers)}


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
    from harness import verify as checking

    keys = part_keys(suite, part)
    tracker, name = reading(tracking_uri, suite, experiment)
    backend.load_frameworks()
    if COMPILE_CACHE.is_dir():  # a run's cache, where there is one: verify creates nothing
        backend.use_compile_cache(COMPILE_CACHE)
    found = checking.verify(tracker, name, lambda line: err.print(line, highlight=False), keys)
    table = Table("run", "cell", "metric", "stored", "recomputed", "ok", title=f"verify {name}")
    for check in found.checks:
        table.add_row(
            check.run_id[:8],
            check.cell,
            check.metric,
            f"{check.stored:.6g}",
            f"{check.recomputed:.6g}" if not check.note else check.note,
            ("yes (near-ties)" if check.by_near_ties else "yes") if check.ok else "NO",
        )
    if found.checks:
        out.print(table)
    for cell in found.unscored:
        out.print(
            f"not checked: run {cell.run_id[:8]} ({checking.cell_label(cell)}), "
            f"{cell.state.value}: no trial finished, so no score was stored",
            highlight=False,
            markup=False,
        )
    for check in found.mismatches:
        err.print(
            f"mismatch: run {check.run_id} ({check.cell}) {check.metric}: stored "
            f"{check.stored:.6g}, " + (check.note or f"recomputed {check.recomputed:.6g}"),
            highlight=False,
            markup=False,
        )
    if found.mismatches:
        raise typer.Exit(1)
    if not found.checks:
        out.print(
            f"nothing was checked: experiment '{name}' holds no cell with a stored score "
            f"({len(found.unscored)} diverged or failed)",
            highlight=False,
        )
        return
    cells = len({c.run_id for c in found.checks})
    unscored = f"; {len(found.unscored)} diverged or failed" if found.unscored else ""
    ties = sum(check.by_near_ties for check in found.checks)
    ties = f"; {ties} within the range of their near-ties" if ties else ""
    out.print(
        f"verified {len(found.checks)} numbers of {cells} cells in experiment '{name}': all "
        f"agree (within {checking.ABSOLUTE:g} + {checking.RELATIVE:g} x |stored|{ties})"
        f"{unscored}",
        highlight=False,
    )
