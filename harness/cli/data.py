"""The commands about tasks, families and their data: `harness tasks`, `spaces`, `generate`
and `clean-cache`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from harness import api
from harness.cli.options import Workdir
from harness.cli.root import DEFAULT_WORKDIR, app, out, user_errors

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command()
@user_errors
def tasks(as_json: JsonOption = False):
    """List the benchmark tasks: input, output, metric, baseline and solved bar."""
    from dataclasses import asdict

    infos = api.tasks()
    if as_json:
        out.print_json(json.dumps([asdict(info) for info in infos]))
        return
    table = Table(
        "task", "what it tests", "input", "output", "metric", "baseline", "solved", "lengths"
    )
    for info in infos:
        arrow = "<=" if info.direction == "min" else ">="
        table.add_row(
            info.name,
            info.description,
            info.input,
            info.output,
            f"{info.metric} ({info.direction})",
            f"{info.baseline:.4g} @ L={info.default_lengths[0]}",
            f"{arrow} {info.solved:.4g}",
            ", ".join(map(str, info.default_lengths)),
        )
    out.print(table)


@app.command()
@user_errors
def spaces(as_json: JsonOption = False):
    """List the model families, the hyperparameters each one searches and their defaults (what
    a grid search trains at) with where each default comes from."""
    rows = api.spaces()
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("family", "description", "hyperparameters")
    for row in rows:
        table.add_row(
            row["family"],
            row["description"],
            "\n".join(
                f"{hp['name']}: {hp['range']}; default {hp['default']}"
                + (f" ({hp['source']})" if hp["source"] else "")
                for hp in row["hyperparameters"]
            ),
        )
    out.print(table)


@app.command()
@user_errors
def generate(
    task: Annotated[str, typer.Argument(help="Task name (see `harness tasks`).")],
    out_path: Annotated[Path, typer.Option("--out", help="Output .npz file (arrays x and y).")],
    length: Annotated[
        int | None, typer.Option(help="Sequence length (the task's default if omitted).")
    ] = None,
    n: Annotated[int, typer.Option(help="Number of examples.")] = 1000,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "train",
):
    """Export a task's dataset as an .npz file readable with numpy alone."""
    made = api.generate(task=task, out=out_path, length=length, n=n, seed=seed, split=split)
    out.print(
        f"wrote {made.path}: x {made.x_shape} {made.x_dtype}, y {made.y_shape} {made.y_dtype}",
        highlight=False,
    )


@app.command("clean-cache")
@user_errors
def clean_cache(workdir: Workdir = DEFAULT_WORKDIR):
    """Delete the cached arrays no task names today.

    Those are a built-in task's from before its code changed; the arrays of today's tasks
    and of your own tasks are kept.
    """
    removed = api.clean_cache(workdir=workdir)
    out.print(f"removed {len(removed)} cache files that no task names today", highlight=False)
