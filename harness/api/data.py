"""Tasks, families and data: `tasks`, `spaces`, `generate` and `clean_cache`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.api.common import DEFAULT_WORKDIR, writable
from harness.errors import UserError

GENERATE_MAX_ELEMENTS = 500_000_000
"""The most numbers (examples x steps) `generate` writes."""


def tasks() -> list:
    """Each benchmark task's `tasks.base.TaskInfo`: input, output, metric, baseline, solved
    bar and default lengths."""
    from tasks import REGISTRY

    return [task.info() for task in REGISTRY.values()]


def spaces() -> list[dict]:
    """Each model family's description and hyperparameters: their ranges, defaults (what a
    grid search trains at) and where each default comes from (search_spaces.describe_space)."""
    from search_spaces import REGISTRY, describe_space

    return [describe_space(family) for family in REGISTRY]


@dataclass
class Generated:
    """What `generate` wrote: arrays x and y in an .npz file."""

    path: Path
    x_shape: tuple[int, ...]
    x_dtype: str
    y_shape: tuple[int, ...]
    y_dtype: str


def generate(
    *,
    task: str,
    out: str | Path,
    length: int | None = None,
    n: int = 1000,
    seed: int = 0,
    split: str = "train",
) -> Generated:
    """Write `n` examples of a task's `split` at `length` (its first default if None) to the
    .npz file `out` (arrays x and y, readable with numpy alone)."""
    import numpy as np

    from tasks import get_task
    from tasks.base import SPLITS

    out = Path(out)
    spec = get_task(task)
    length = spec.default_lengths[0] if length is None else length
    spec.check_length(length)
    if n < 1 or n * spec.sequence_steps(length) > GENERATE_MAX_ELEMENTS:
        raise UserError(
            f"n={n} is out of range at length {length}: accepted 1 <= n and "
            f"n x steps <= {GENERATE_MAX_ELEMENTS:,}"
        )
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}': accepted {', '.join(SPLITS)}")
    if out.suffix != ".npz":
        raise UserError(f"output path '{out}' must end in .npz")
    writable(out.parent, "output folder")
    x, y = spec.generate(n, length, seed, split)
    partial = out.with_name(out.name + ".partial.npz")
    try:
        np.savez(partial, x=x, y=y)
        partial.replace(out)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise UserError(f"output file '{out}' cannot be written: {error.strerror}") from None
    return Generated(out, x.shape, str(x.dtype), y.shape, str(y.dtype))


def clean_cache(*, workdir: str | Path = DEFAULT_WORKDIR) -> list[Path]:
    """Delete the cached arrays no task names today (a built-in task's from before its code
    changed; today's tasks' and your own tasks' arrays are kept): the files deleted."""
    from harness.data import prune_cache

    return prune_cache(Path(workdir) / "cache")
