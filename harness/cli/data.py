"""The commands about tasks, families and their data: `harness tasks`, `spaces`, `generate`
and `clean-cache`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from harness.cli.options import Workdir
from harness.cli.root import DEFAULT_WORKDIR, app, out, user_errors, writable_dir
from harness.errors import UserError

MAX_ELEMENTS = 500_000_000
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command()
@user_errors
def tasks(as_json: JsonOption = False):
    """List the benchmark tasks: input, output, metric, baseline and solved bar."""
    from dataclasses import asdict

    from tasks import REGISTRY

    infos = [task.info() for task in REGISTRY.values()]
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
    from search_spaces import REGISTRY, describe_space

    rows = [describe_space(family) for family in REGISTRY]
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
    import numpy as np

    from tasks import get_task
    from tasks.base import SPLITS

    spec = get_task(task)
    length = spec.default_lengths[0] if length is None else length
    spec.check_length(length)
    if n < 1 or n * spec.sequence_steps(length) > MAX_ELEMENTS:
        raise UserError(
            f"n={n} is out of range at length {length}: accepted 1 <= n and "
            f"n x steps <= {MAX_ELEMENTS:,}"
        )
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}': accepted {', '.join(SPLITS)}")
    if out_path.suffix != ".npz":
        raise UserError(f"output path '{out_path}' must end in .npz")
    writable_dir(out_path.parent, "output folder")
    x, y = spec.generate(n, length, seed, split)
    partial = out_path.with_name(out_path.name + ".partial.npz")
    try:
        np.savez(partial, x=x, y=y)
        partial.replace(out_path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise UserError(f"output file '{out_path}' cannot be written: {error.strerror}") from None
    out.print(f"wrote {out_path}: x {x.shape} {x.dtype}, y {y.shape} {y.dtype}", highlight=False)


@app.command("clean-cache")
@user_errors
def clean_cache(workdir: Workdir = DEFAULT_WORKDIR):
    """Delete the cached arrays no task names today.

    Those are a built-in task's from before its code changed; the arrays of today's tasks
    and of your own tasks are kept.
    """
    from harness.data import prune_cache

    removed = prune_cache(workdir / "cache")
    out.print(f"removed {len(removed)} cache files that no task names today", highlight=False)
