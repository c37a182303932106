"""Shared helpers: run the real `harness` command and read a real MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = [sys.executable, "-m", "harness"]


def harness(
    *args: str,
    cwd: Path,
    backend: str = "jax",
    timeout: int = 900,
    check: bool = False,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """Run `harness ARGS` in `cwd` as a real subprocess."""
    full_env = {**os.environ, "KERAS_BACKEND": backend, **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(
        [*HARNESS, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def write_suite(path: Path, name: str, blocks: list[dict], **budget) -> Path:
    """A tiny suite file: `blocks` are [[cells]] tables, `budget` overrides the tiny defaults."""
    tiny = {
        "max_trials": 2,
        "epochs": 1,
        "batch_size": 32,
        "n_train": 64,
        "n_val": 32,
        "n_test": 32,
    }
    tiny.update(budget)
    lines = [f'name = "{name}"', "[budget]"]
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in tiny.items()]
    for block in blocks:
        lines.append("[[cells]]")
        lines += [f"{k} = {v!r}".replace("'", '"') for k, v in block.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def store_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def all_runs(uri: str, experiment: str):
    """Every run of `experiment` as a pandas frame (params, metrics, tags as columns)."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], max_results=10_000)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
