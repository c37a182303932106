#!/usr/bin/env bash
# Download the wheels a GPU machine lacks to run the harness, into .whl/ (ignored by git).
#
# The GPU machines lent to this project (NVIDIA H100 / H200, Python 3.12, manylinux
# x86_64) already have PyTorch and JAX with CUDA, numpy, pandas, matplotlib, rich,
# typer, psutil, h5py, ml-dtypes, requests, pyyaml, protobuf, click, anyio, ... but no
# TensorFlow, Keras, Keras Tuner or MLflow, and no network. This script fetches
# exactly what is missing: keras, keras-tuner, mlflow-skinny (the MlflowClient and
# the SQLite store; full `mlflow` only adds the UI server and model flavours, which
# a run does not need), sqlalchemy and alembic (the SQLite store needs them), and
# every dependency of those that the machine lacks, each pinned to the version in
# this checkout's .venv, for CPython 3.12 on manylinux x86_64.
#
#   scripts/gpu_wheels.sh            # download into .whl/ and check the bundle
#   scripts/gpu_wheels.sh --check    # only check an existing .whl/
#
# The check reads each wheel's Requires-Dist and fails if a requirement (markers
# evaluated for Python 3.12 on Linux x86_64) is met neither by a wheel in the
# bundle nor by a package the GPU image already has (GPU_HAS below), or if a
# package is there in two versions (pip refuses to install such a bundle).
#
# Carry and install on the GPU machine (the device tool of this workplace): name
# `.whl` in the run's `carry` (the bundle is ~22 MiB of the 64 MiB a call may
# take) and start the command with
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
#       --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit;
#
# then, for example:
#
#   python3 benchmarks/gpu_backends.py --out "$OUT"   # sets KERAS_BACKEND per process
#   KERAS_BACKEND=jax python3 -m harness run --suite quick
#
# Elsewhere (any machine without network): copy .whl/ over and run the same pip
# install, into a virtual environment made with --system-site-packages so it keeps
# the machine's CUDA builds of torch and jax.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
DEST=.whl

# The packages to bring, by the name pip knows them; versions come from $PYTHON's
# environment so the GPU runs the same code as this checkout.
WANTED=(
    # the frameworks
    keras keras-tuner kt-legacy mlflow-skinny
    # keras
    namex optree
    # mlflow-skinny
    cachetools databricks-sdk fastapi gitpython gitdb smmap importlib-metadata
    opentelemetry-api opentelemetry-proto opentelemetry-sdk opentelemetry-semantic-conventions
    pydantic pydantic-core annotated-types typing-inspection python-dotenv sqlparse
    starlette uvicorn
    # databricks-sdk -> google-auth
    google-auth pyasn1 pyasn1-modules cryptography cffi pycparser
    # the SQLite tracking store
    sqlalchemy alembic mako
)

# What the GPU image already has (KINDS.md of the device tool, read 2026-11-17), as
# far as the check below needs it.
GPU_HAS="absl-py annotated-doc anyio attrs certifi charset-normalizer click cloudpickle
filelock fsspec grpcio h11 h5py idna jax jaxlib jinja2 markdown-it-py markupsafe
matplotlib mdurl ml-dtypes numpy packaging pandas pillow protobuf psutil pygments
python-dateutil pyyaml requests rich scipy shellingham six torch typer
typing-extensions urllib3 zipp"

check() {
    "$PYTHON" - "$DEST" "$GPU_HAS" <<'EOF'
import re
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

from packaging.requirements import Requirement

folder, gpu_has = Path(sys.argv[1]), set(sys.argv[2].split())
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
env = {
    "python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
    "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
    "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": "",
}
versions, requires = defaultdict(set), {}
for wheel in sorted(folder.glob("*.whl")):
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(meta).decode()
    fields = dict(re.findall(r"^(Name|Version): (.+)$", text, re.M))
    name = norm(fields["Name"])
    versions[name].add(fields["Version"])
    requires[name] = re.findall(r"^Requires-Dist: (.+)$", text, re.M)
problems = [f"{n}: {len(v)} versions {sorted(v)}" for n, v in versions.items() if len(v) > 1]
for name, lines in requires.items():
    for line in lines:
        req = Requirement(line)
        if req.marker and not req.marker.evaluate(env):
            continue
        dep = norm(req.name)
        if dep in versions:
            if not all(req.specifier.contains(v, prereleases=True) for v in versions[dep]):
                problems.append(f"{name} needs {line}, bundle has {sorted(versions[dep])}")
        elif dep not in gpu_has:
            problems.append(f"{name} needs {line}: neither bundled nor on the GPU image")
size = sum(w.stat().st_size for w in folder.glob("*.whl")) / 2**20
print(f"{len(versions)} packages, {size:.1f} MiB in {folder}/")
for problem in problems:
    print("problem:", problem)
sys.exit(1 if problems or not versions else 0)
EOF
}

if [[ "${1:-}" != "--check" ]]; then
    mapfile -t PINS < <("$PYTHON" - "${WANTED[@]}" <<'EOF'
import sys
from importlib import metadata

for name in sys.argv[1:]:
    print(f"{name}=={metadata.version(name)}")
EOF
    )
    mkdir -p "$DEST"
    # Older downloads of the same packages would leave two versions: start clean.
    rm -f "$DEST"/*.whl
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
        --python-version 3.12 --implementation cp \
        --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        -d "$DEST" "${PINS[@]}" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
fi
check
