"""pytest's hooks and fixtures for the tests; the helpers the test files import are in
tests/helpers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")  # before any test module imports Keras
# On a GPU machine the test processes (pytest -n 2 and the harness subprocesses) share the
# device: JAX would otherwise take 75% of its memory in each.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from tests.helpers import SHARED_COMPILE_CACHE, MlflowServer, free_port  # noqa: E402


def pytest_configure(config):
    """In the controlling process (the workers of `pytest -n` inherit it): the shared cache."""
    if not hasattr(config, "workerinput") and SHARED_COMPILE_CACHE not in os.environ:
        config.shared_compile_cache = tempfile.mkdtemp(prefix="harness-tests-jax-cache-")
        os.environ[SHARED_COMPILE_CACHE] = config.shared_compile_cache


def pytest_unconfigure(config):
    if hasattr(config, "shared_compile_cache"):
        shutil.rmtree(config.shared_compile_cache, ignore_errors=True)


# The test files that take longest (real runs, processes, servers), started first by
# `make test` (pytest -n 2 --dist loadfile --no-loadscope-reorder), so that the two workers
# finish together; the other files follow in their usual order. Only the order depends on it.
LONGEST_FIRST = (
    "test_probes", "test_verify", "test_report", "test_scan", "test_tracking", "test_api",
)  # fmt: skip


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = item.path.stem
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the other files, is kept


@pytest.fixture
def restartable_server(tmp_path):
    """A real `mlflow server` on 127.0.0.1 with a SQLite backend, stopped after the test."""
    server = MlflowServer(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server-artifacts")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mlflow_server(restartable_server):
    """The URI of a `restartable_server` the test does not stop."""
    return restartable_server.uri


@pytest.fixture
def postgres_uri():
    """A PostgreSQL cluster of its own on 127.0.0.1 (initdb, pg_ctl): its database URI.

    Fails, never skips, when PostgreSQL is not installed (.ci/run installs it).
    """
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    assert found, "PostgreSQL is not installed: apt-get install postgresql (as .ci/run does)"
    bindir = found[-1].parent
    folder = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    as_postgres = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(folder, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def pg(tool: str, *args: str) -> None:
        subprocess.run(
            [*as_postgres, str(bindir / tool), *args], check=True, capture_output=True, timeout=120
        )

    pg("initdb", "-D", str(folder / "data"), "-A", "trust", "-U", "postgres")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    pg(
        "pg_ctl",
        "-D",
        str(folder / "data"),
        "-l",
        str(folder / "log"),
        "-o",
        options,
        "-w",
        "start",
    )
    try:
        pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        pg("pg_ctl", "-D", str(folder / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
