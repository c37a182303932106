"""The CPU counterpart of the GPU benchmark: benchmarks/gpu_backends.py at tiny sizes.

It runs the real script (torch and jax processes, the bare PyTorch loop) and
checks the JSON it writes, so the script cannot rot between GPU runs, also when a time
limit interrupts it. It asserts structure, never speed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backend import gpu_free_bytes
from tests.helpers import DEFAULT_SIGINT, wait_for_output

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_backends.py"
FAMILIES = ["lstm", "gru", "bilstm", "transformer"]
RECURRENT = ["lstm", "gru", "bilstm"]
BACKENDS = ["torch", "jax"]
LENGTHS = [16]
VARIANTS = ["fp32", "fp32-nofused", "bf16", "bf16-nofused"]


def measured(seconds) -> bool:
    return (isinstance(seconds, float) and seconds > 0) or seconds == "oom"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("results")
    tiny = ["--lengths", *map(str, LENGTHS), "--batch-size", "8", "--width", "8"]
    tiny += ["--examples", "32", "--epochs", "2", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *tiny],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted(out.glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text()), out, done.stdout


@pytest.mark.slow
def test_every_family_length_and_backend_is_measured(report):
    data, _, _ = report
    assert data["crashes"] == {}
    assert data["settings"]["lengths"] == LENGTHS
    rows = {(r["backend"], r["family"], r["variant"], r["length"]): r for r in data["results"]}
    for backend in BACKENDS:
        for family in FAMILIES:
            for length in LENGTHS:
                row = rows[(backend, family, "fp32", length)]
                assert measured(row["seconds"]), row
                assert row["fused_rnn_kernel"] in {"yes", "no", "n/a"}
                assert row["fused_attention"] in {"yes", "no", "n/a"}
                if row["seconds"] != "oom":
                    assert len(row["epoch_seconds"]) == 2 and row["parameters"] > 0
        for variant in VARIANTS:
            for length in LENGTHS:
                assert measured(rows[(backend, "transformer", variant, length)]["seconds"])
    # On a CPU no fused kernel runs, and the script says so; Keras on JAX has no cuDNN GRU.
    fused = {
        rows[(b, f, "fp32", n)]["fused_rnn_kernel"]
        for b in BACKENDS
        for f in RECURRENT
        for n in LENGTHS
    }
    assert fused == {"no"} if gpu_free_bytes() is None else fused <= {"yes", "no"}
    assert {rows[("jax", "gru", "fp32", n)]["fused_rnn_kernel"] for n in LENGTHS} == {"no"}
    assert {
        rows[(b, "transformer", "fp32", n)]["fused_rnn_kernel"] for b in BACKENDS for n in LENGTHS
    } == {"n/a"}


@pytest.mark.slow
def test_bare_baselines_and_ratios(report):
    data, _, _ = report
    rows = {(r["backend"], r["family"], r["length"]): r for r in data["results"]}
    for family in RECURRENT:
        for length in LENGTHS:
            assert measured(rows[("bare", family, length)]["seconds"])
    assert ("bare", "transformer", 16) not in rows
    ratios = {(r["backend"], r["family"], r["length"]): r for r in data["ratios"]}
    assert set(ratios) == {(b, f, n) for b in BACKENDS for f in RECURRENT for n in LENGTHS}
    for (backend, family, length), r in ratios.items():
        harness, bare = (
            rows[(backend, family, length)]["seconds"],
            rows[("bare", family, length)]["seconds"],
        )
        assert r["harness_seconds"] == harness and r["bare_seconds"] == bare
        if isinstance(harness, float) and isinstance(bare, float):
            assert r["ratio"] == pytest.approx(harness / bare)
        else:
            assert r["ratio"] is None


@pytest.mark.slow
def test_markdown_and_printed_table(report):
    data, out, stdout = report
    md = next(out.glob("*.md")).read_text()
    assert data["device"] in md and "| lstm | 16 |" in md and "bf16-nofused" in md
    assert "harness/bare" in stdout and "wrote" in stdout
    assert set(data["versions"]) == {"torch", "jax", "bare"}


@pytest.mark.slow
def test_an_interrupted_benchmark_keeps_what_it_measured(tmp_path):
    """SIGINT (a time limit) while the second process measures: the first one's rows are
    in the files, the rest recorded as interrupted or not run, exit code 130."""
    tiny = ["--lengths", "16", "--batch-size", "8", "--width", "8", "--examples", "32"]
    tiny += ["--epochs", "2", "--families", "lstm", "--out", str(tmp_path), "--stem", "cut"]
    log = tmp_path / "log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [*DEFAULT_SIGINT, sys.executable, "-u", str(SCRIPT), *tiny], cwd=ROOT,
            stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    wait_for_output(process, log, "jax: measuring", timeout=600)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130, log.read_text()
    data = json.loads((tmp_path / "cut.json").read_text())
    assert "| lstm | 16 |" in (tmp_path / "cut.md").read_text()
    rows = {r["backend"]: r for r in data["results"]}
    assert measured(rows["torch"]["seconds"])
    assert rows["jax"]["seconds"] == "error" and rows["bare"]["seconds"] == "error"
    assert data["crashes"]["jax"].startswith("interrupted")
    assert data["crashes"]["bare"] == "not run: interrupted"


def test_oom_is_recorded_not_raised():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gpu_backends import outcome_of, ratios, slug
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))

    assert outcome_of(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")) == "oom"
    assert outcome_of(ValueError("RESOURCE_EXHAUSTED: Out of memory while trying")) == "oom"
    assert outcome_of(ValueError("shapes do not match")) == "error"
    rows = [
        {"backend": "torch", "family": "lstm", "variant": "fp32", "length": 10, "seconds": "oom"},
        {"backend": "bare", "family": "lstm", "variant": "fp32", "length": 10, "seconds": 2.0},
    ]
    assert ratios(rows, ["torch", "jax"]) == [
        {
            "backend": "torch",
            "family": "lstm",
            "length": 10,
            "harness_seconds": "oom",
            "bare_seconds": 2.0,
            "ratio": None,
        },
        {
            "backend": "jax",
            "family": "lstm",
            "length": 10,
            "harness_seconds": None,
            "bare_seconds": 2.0,
            "ratio": None,
        },
    ]
    assert slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
