"""Shared test helpers: run the real `harness` command (in this process or as a
subprocess), call harness.api on tiny cells, and read a real MLflow store. Test files import
them from here (pytest's conftest.py keeps only hooks and fixtures)."""

from __future__ import annotations

import ast
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import traceback
import urllib.request
from pathlib import Path

# Every JAX process of a test session (the test workers and the harness processes they start)
# shares one compilation cache, made for the session (tests/conftest.py): a program the tests
# compiled once (the same tiny model in another test) is loaded, not compiled again. A test
# about where the harness puts its cache passes OWN_COMPILE_CACHE to its commands.
SHARED_COMPILE_CACHE = "JAX_COMPILATION_CACHE_DIR"
OWN_COMPILE_CACHE = {SHARED_COMPILE_CACHE: ""}  # the harness's own choice, as outside the tests

HARNESS = [sys.executable, "-m", "harness"]
# The data sizes of every tiny real search in the tests.
TINY_DATA = ["--n-train", "64", "--n-val", "32", "--n-test", "32", "--batch-size", "32"]


def tiny_cell(
    family: str = "gru", epochs: int = 2, max_trials: int | None = None, n_train: int = 64
) -> list[str]:
    """`harness run` flags for one tiny cell: adding at L=8 on TINY_DATA sizes."""
    flags = ["--task", "adding", "--length", "8", "--family", family, "--epochs", str(epochs)]
    if max_trials is not None:
        flags += ["--max-trials", str(max_trials)]
    return [*flags, *TINY_DATA, "--n-train", str(n_train)]


REPO = Path(__file__).resolve().parent.parent


# The budget of every tiny real search the tests make through harness.api (TINY_DATA's sizes).
TINY_BUDGET = {"n_train": 64, "n_val": 32, "n_test": 32, "batch_size": 32}


def api_cell(
    folder: Path,
    family: str = "gru",
    epochs: int = 2,
    max_trials: int | None = None,
    n_train: int = 64,
    workdir: Path | None = None,
    **settings,
):
    """harness.api.run of one tiny cell (tiny_cell's: adding at L=8 on TINY_BUDGET's sizes)
    into the SQLite store of `folder`, its working directory `workdir` (else `folder/data`,
    as `harness run` in `folder` has). `settings`: more of api.run's keywords (experiment, eval_lengths,
    extra_seeds) or Budget fields (tuner, grid, ...). What api.run returns."""
    from harness import api

    budget = {**TINY_BUDGET, "epochs": epochs, "n_train": n_train}
    if max_trials is not None:
        budget["max_trials"] = max_trials
    run_keywords = {"experiment", "eval_lengths", "extra_seeds", "seed", "events", "workers"}
    budget.update({k: v for k, v in settings.items() if k not in run_keywords})
    return api.run(
        tasks=["adding"], lengths=[8], families=[family], budget=budget,
        store=store_uri(folder), workdir=folder / "data" if workdir is None else workdir,
        **{k: v for k, v in settings.items() if k in run_keywords},
    )  # fmt: skip


def harness(
    *args: str,
    cwd: Path,
    backend: str = "jax",
    timeout: int = 900,
    check: bool = False,
    env: dict | None = None,
    process: bool = False,
) -> subprocess.CompletedProcess:
    """Run `harness ARGS` in `cwd`: in this process through Typer's CliRunner, or as a real
    subprocess where the process is the point (`process=True`: signals, your own modules
    imported afresh, a new store file at a path this process has open), where a fault is
    injected (it kills the process) or where another backend than this process's is asked
    for."""
    if process or backend != os.environ["KERAS_BACKEND"] or "HARNESS_FAULT" in (env or {}):
        return harness_process(
            *args, cwd=cwd, backend=backend, timeout=timeout, env=env, check=check
        )
    return checked(in_process(args, cwd, env or {}), check)


def checked(result: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
    """`result`, or an AssertionError with its output if `check` and it did not exit 0."""
    if check and result.returncode != 0:
        command = " ".join(map(str, result.args))
        raise AssertionError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return result


def in_process(args: tuple[str, ...], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """`harness ARGS` through CliRunner, this process's cwd, environment, sys.path and SIGINT
    handler put back afterwards; an exception escaping the command reads as a traceback and
    exit 1, as the real command's would."""
    from typer.testing import CliRunner

    from harness.cli import app

    saved = os.getcwd(), dict(os.environ), list(sys.path), signal.getsignal(signal.SIGINT)
    os.environ.update(env)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args))
    finally:
        os.chdir(saved[0])
        os.environ.clear()
        os.environ.update(saved[1])
        sys.path[:] = saved[2]
        signal.signal(signal.SIGINT, saved[3])
    stderr, code = result.stderr, result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(
            traceback.format_exception(result.exception)
        )
        code = 1
    return subprocess.CompletedProcess(["harness", *args], code, result.stdout, stderr)


def harness_process(
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
    return checked(result, check)


def harness_loading(
    *args: str, cwd: Path, modules: tuple[str, ...]
) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `harness ARGS` in `cwd` (from this checkout); also which of `modules` it loaded."""
    script = (
        "import atexit, runpy, sys\n"
        f"atexit.register(lambda: print('LOADED', *[m for m in {modules!r} if m in sys.modules],"
        " file=sys.stderr))\n"
        f"sys.argv = ['harness', *{args!r}]\n"
        "runpy.run_module('harness', run_name='__main__')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True,
        env={**env, "PYTHONPATH": str(REPO)}, timeout=300,
    )  # fmt: skip
    assert result.stderr.splitlines()[-1].startswith("LOADED"), result.stderr
    return result, set(result.stderr.splitlines()[-1].split()[1:])


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The one `error: ...` line of a command that exited 2 on bad input (no traceback)."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


DEFAULT_SIGINT = [
    sys.executable, "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]  # fmt: skip
"""A prefix for a command a test interrupts with SIGINT: it runs the command with Ctrl-C's
default action (a shell starts background jobs with SIGINT ignored, which children
inherit), by exec, without forking this process."""


def start_harness(*args: str, cwd: Path, log: str, env: dict | None = None) -> subprocess.Popen:
    """Start `harness ARGS` in `cwd` in the background; its output goes to `cwd/log`."""
    full_env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO), **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    with open(cwd / log, "w") as out:
        return subprocess.Popen(
            [*DEFAULT_SIGINT, *HARNESS, *args], cwd=cwd, env=full_env, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def wait_for_output(process: subprocess.Popen, log: Path, text: str, timeout: float) -> None:
    """Wait until a `start_harness` process's output holds `text` (the harness's own
    progress says when a trial runs, so nothing need poll the store it writes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if text in log.read_text():
            return
        time.sleep(0.2)
    output = log.read_text()
    if text not in output:
        raise AssertionError(f"no {text!r} from the harness; its output:\n{output[-3000:]}")


def finish(process: subprocess.Popen, cwd: Path, log: str, timeout: int = 600) -> str:
    """Wait for a `start_harness` process; its output, and an error unless it exited 0."""
    process.wait(timeout=timeout)
    output = (cwd / log).read_text()
    assert process.returncode == 0, f"{log} exited {process.returncode}:\n{output[-3000:]}"
    return output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 that a test can stop and start again."""

    def __init__(self, backend_uri: str, artifacts: Path):
        self.backend_uri, self.artifacts = backend_uri, artifacts
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--backend-store-uri",
                self.backend_uri,
                "--artifacts-destination",
                str(self.artifacts),
                "--workers",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=1)
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise AssertionError(f"mlflow server on {self.backend_uri} did not start within 90 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


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


def copy_store(source: Path, target: Path) -> None:
    """Copy the SQLite store of folder `source` into folder `target`, the writes still in its
    write-ahead log included (a store another connection of this process holds open)."""
    with sqlite3.connect(source / "mlflow.db") as old, sqlite3.connect(target / "mlflow.db") as new:
        old.backup(new)


def store_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def all_runs(uri: str, experiment: str):
    """Every run of `experiment` as a pandas frame (params, metrics, tags as columns).

    mlflow.set_tracking_uri also sets $MLFLOW_TRACKING_URI in this process: the helpers
    that start the harness drop it, or a later harness would log to this store."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], max_results=10_000)


def client(folder: Path):
    """An MlflowClient on the store of `folder`."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store_uri(folder))


def add_run(
    folder: Path,
    experiment: str,
    tags: dict,
    params: dict | None = None,
    metrics: dict | None = None,
    start_time: int | None = None,
    finished: bool = True,
) -> str:
    """A run written straight into the store of `folder` (the experiment made if absent), for
    states a real search takes long to reach: two budgets, a later rerun. Its id."""
    from harness.tracking import Tracker

    experiment_id = Tracker(store_uri(folder)).experiment_id(experiment)
    mlflow = client(folder)
    run_id = mlflow.create_run(experiment_id, start_time=start_time, tags=tags).info.run_id
    for key, value in (params or {}).items():
        mlflow.log_param(run_id, key, str(value))
    for key, value in (metrics or {}).items():
        mlflow.log_metric(run_id, key, value)
    if finished:
        mlflow.set_terminated(run_id, "FINISHED")
    return run_id


def md_rows(text: str, first_header: str) -> list[list[str]]:
    """The rows (header first) of the first markdown table whose first column is `first_header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return [rows[0], *rows[2:]]


def section_text(text: str, title: str, level: int = 2) -> str:
    """The markdown of the section headed `title` (at `level`), up to the next such heading."""
    marker = "#" * level
    start = text.index(f"{marker} {title}\n")
    end = text.find(f"\n{marker} ", start + 1)
    return text[start : end if end != -1 else len(text)]


# -- the project's import graph ------------------------------------------------------------
PACKAGES = ("harness", "tasks", "search_spaces")


def module_files() -> dict[str, Path]:
    """Every module of the project's packages by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that module `name` imports anywhere in its file, with the packages
    that importing them runs first (those that do not hold `name` itself)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in modules else base)
    with_packages = set(targets)
    for target in targets:
        parts = target.split(".")
        with_packages.update(".".join(parts[:end]) for end in range(1, len(parts)))
    own = {".".join(name.split(".")[:end]) for end in range(1, name.count(".") + 2)}
    return {t for t in with_packages if t in modules and t not in own}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported(name, path, modules) for name, path in modules.items()}
