"""Train/validation/test arrays for a cell, generated once and cached on disk as .npz.

The cache is keyed by task, length, n and seed, so every family of a suite
trains and is tested on exactly the same arrays.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tasks.base import Task

SPLITS = {"train": 0, "val": 1, "test": 2}


def split_seed(seed: int, split: str) -> int:
    """Distinct, stable generator seeds for the splits of one search seed."""
    return seed * len(SPLITS) + SPLITS[split]


def load(
    task: Task, length: int, n: int, seed: int, cache_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) for the arguments, from the cache or generated and written atomically."""
    path = cache_dir / f"{task.name}_L{length}_n{n}_s{seed}.npz"
    if path.exists():
        with np.load(path) as cached:
            return cached["x"], cached["y"]
    x, y = task.generate(n, length, seed)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(partial, x=x, y=y)
    partial.replace(path)
    return x, y


def split(task: Task, length: int, n: int, seed: int, name: str, cache_dir: Path):
    """One named split ("train", "val" or "test") of a search seed."""
    return load(task, length, n, split_seed(seed, name), cache_dir)
