"""What `make` installs: the extras by the GPU that nvidia-smi lists, and `.[dev,cuda]` resolving.

The Makefile tests run make itself, `make -n install` (print the recipe, run nothing), on a
copy of the Makefile and pyproject.toml in a temporary folder whose PATH holds only grep, cat
and, where a test wants one, a fake `nvidia-smi` script. The slow test asks the registry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO

MAKE = shutil.which("make")

# What `nvidia-smi -L` prints on a GPU machine, and how it fails without a GPU or driver.
LISTS_GPU = 'echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-6b5e0c6e-2f3c-4f1a-9d1e-0123456789ab)"'
NO_DRIVER = (
    'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver."; exit 9'
)
NO_DEVICE = 'echo "No devices were found"; exit 6'


def copy_project(folder: Path) -> None:
    """The Makefile and pyproject.toml (the prerequisite of .venv/.installed) into `folder`."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, folder / name)


def make_install_dry_run(folder: Path, nvidia_smi: str | None) -> str:
    """`make -n install` in `folder`, with `nvidia_smi` (a shell body) as the only nvidia-smi."""
    if not (folder / "Makefile").exists():
        copy_project(folder)
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("grep", "cat"):  # what the Makefile's $(shell ...) calls besides nvidia-smi
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(shutil.which(tool))
    fake = bin_dir / "nvidia-smi"
    fake.unlink(missing_ok=True)
    if nvidia_smi is not None:
        fake.write_text(f"#!/bin/sh\n{nvidia_smi}\n")
        fake.chmod(0o755)
    # PATH is bin_dir alone, so a real nvidia-smi on a GPU machine stays out; the make flags
    # of a `make test` that runs these tests (EXTRAS=... among them) stay out too.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PATH"] = str(bin_dir)
    result = subprocess.run(
        [MAKE, "--no-print-directory", "-n", "install"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def pip_extras(recipe: str) -> str | None:
    """The extras of the recipe's `pip install -e '.[...]'`, or None if it installs nothing."""
    found = re.findall(r"pip install --quiet -e '\.\[([^\]]*)\]'", recipe)
    assert len(found) <= 1, recipe
    return found[0] if found else None


def test_a_gpu_listed_by_nvidia_smi_installs_the_cuda_extra(tmp_path):
    recipe = make_install_dry_run(tmp_path, LISTS_GPU)
    assert pip_extras(recipe) == "dev,cuda"
    assert "jax.devices('gpu')" in recipe  # the install ends by showing the GPUs JAX sees
    assert "echo 'dev,cuda' > .venv/.installed" in recipe


@pytest.mark.parametrize(
    "nvidia_smi",
    [None, NO_DRIVER, NO_DEVICE, "exit 0", f"{LISTS_GPU}; exit 1"],
    ids=["absent", "no-driver", "no-device", "lists-nothing", "lists-a-gpu-but-fails"],
)
def test_no_gpu_installs_the_dev_extra_only(tmp_path, nvidia_smi):
    recipe = make_install_dry_run(tmp_path, nvidia_smi)
    assert pip_extras(recipe) == "dev"
    assert "jax" not in recipe
    assert "echo 'dev' > .venv/.installed" in recipe


@pytest.mark.parametrize(
    ("stamp", "gpu", "expected"),
    [
        ("dev,cuda", True, "nothing"),  # a GPU machine is not reinstalled at every call
        ("dev", False, "nothing"),
        ("", False, "nothing"),  # a stamp from before stamps recorded the extras: dev
        ("", True, "afresh"),
        ("dev", True, "afresh"),  # a GPU appeared: pip adds the cuda extra to a new .venv
        ("dev,cuda", False, "afresh"),  # the GPU went: a new .venv without the CUDA build
    ],
)
def test_the_stamp_records_the_extras_and_other_extras_make_the_venv_afresh(
    tmp_path, stamp, gpu, expected
):
    copy_project(tmp_path)
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / ".installed").write_text(f"{stamp}\n" if stamp else "")
    past = time.time() - 3600
    os.utime(tmp_path / "pyproject.toml", (past, past))  # the stamp is newer
    recipe = make_install_dry_run(tmp_path, LISTS_GPU if gpu else NO_DRIVER)
    wanted = "dev,cuda" if gpu else "dev"
    if expected == "nothing":
        assert pip_extras(recipe) is None, recipe
    else:
        assert recipe.splitlines()[0] == "rm -rf .venv"
        assert pip_extras(recipe) == wanted


def test_a_newer_pyproject_reinstalls_in_place_with_the_same_extras(tmp_path):
    copy_project(tmp_path)
    (tmp_path / ".venv").mkdir()
    stamp = tmp_path / ".venv" / ".installed"
    stamp.write_text("dev,cuda\n")
    past = time.time() - 3600
    os.utime(stamp, (past, past))  # pyproject.toml is newer
    recipe = make_install_dry_run(tmp_path, LISTS_GPU)
    assert "rm -rf" not in recipe
    assert pip_extras(recipe) == "dev,cuda"


# --- .[dev,cuda] resolves as a whole ------------------------------------------------------

# pip 25.3 is the first whose `install --dry-run` does not download the wheels it resolved;
# with fast-deps it reads each wheel's metadata by HTTP range requests (the registry's index
# here does not offer PEP 658 metadata files), tens of MB in all instead of several GB.
RESOLVER_PIP = "pip==26.3"
# The wheels a Linux x86_64 machine with glibc 2.28 or newer takes (torch 2.13.0 needs 2.28).
LINUX_X86_64 = [
    *(f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
]
# pip settings that add sources besides the registry: on this project's machines they bring
# the CPU build of torch 2.13.0 from the disk, which a GPU machine with network would not see.
LOCAL_SOURCES = ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def resolver_pip(tmp_path_factory) -> Path:
    """A pip that resolves without downloading wheels, in a new virtual environment."""
    venv = tmp_path_factory.mktemp("resolver") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = venv / "bin" / "pip"
    subprocess.run([str(pip), "install", "--quiet", RESOLVER_PIP], check=True)
    return pip


@pytest.mark.slow
@pytest.mark.parametrize(
    "python", sorted({f"{sys.version_info.major}.{sys.version_info.minor}", "3.12"})
)
def test_dev_and_cuda_extras_resolve_together_on_linux(resolver_pip, tmp_path, python):
    """`.[dev,cuda]` for Linux x86_64 against the registry alone: a pip dry run, metadata only.

    3.12 is the Python of the GPU machines lent to this project. Fails (never skips) if pip
    finds no resolution, and stops pip at once if it starts to download a whole wheel.
    """
    report = tmp_path / "report.json"
    platforms = [flag for tag in LINUX_X86_64 for flag in ("--platform", tag)]
    command = [
        str(resolver_pip),
        "install",
        "--dry-run",
        "--ignore-installed",
        "--only-binary=:all:",
        "--use-feature=fast-deps",
        "--progress-bar=off",
        "--python-version",
        python,
        *platforms,
        "--report",
        str(report),
        ".[dev,cuda]",
    ]
    env = {k: v for k, v in os.environ.items() if k not in LOCAL_SOURCES}
    env["PIP_CONFIG_FILE"] = os.devnull  # no pip.conf: no find-links, no cap on torch
    lines: list[str] = []
    with subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as pip:
        for line in pip.stdout:
            lines.append(line)
            # "Downloading x.whl (526.6 MB)"; a PEP 658 "x.whl.metadata" file is fine.
            if line.lstrip().startswith("Downloading ") and ".whl.metadata" not in line:
                pip.kill()
                pytest.fail(f"pip began to download a whole wheel: {line.strip()}")
    output = "".join(lines[-40:])
    assert pip.returncode == 0, f"pip found no resolution of .[dev,cuda]:\n{output}"

    install = json.loads(report.read_text())["install"]
    version = {
        normalized(item["metadata"]["name"]): item["metadata"]["version"] for item in install
    }
    # The registry's torch 2.13.0 (for Linux, a CUDA 13.0 build), not a CPU build from the disk.
    assert version["torch"] == "2.13.0"
    assert "tensorflow" in version and "keras" in version
    # JAX's CUDA plugin matches jaxlib and jax, for the CUDA major that torch uses ...
    assert version["jax-cuda13-plugin"] == version["jaxlib"] == version["jax"]
    assert "nvidia-cudnn-cu13" in version
    # ... so that one set of NVIDIA libraries serves both.
    assert not [name for name in version if name.endswith("-cu12") or "cuda12" in name]
