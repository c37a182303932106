#!/usr/bin/env bash
# The GPU check: one command on a GPU machine with the wheel bundle (scripts/gpu_wheels.sh)
# in .whl/ beside the checkout and no network, in at most GPU_CHECK_SECONDS (default 290)
# in all: every step's limit, and the 5 s it is given to stop after SIGINT, is cut to fit.
#
#   scripts/gpu_check.sh OUT     # e.g. the device tool's "$OUT"
#
# Each step under its own time limit (SIGINT at the limit: each one records what it did):
#   0. the wheel bundle installed (when .whl/ is there); the GPU, versions, commit logged;
#   1. the backend benchmark at T=1000: lstm, gru, transformer in fp32 and bf16, per
#      Keras backend (JAX first) against a bare cuDNN loop, the fused kernels as observed
#      (benchmarks/gpu_backends.py; its files rewritten after each backend's process); <= 50 s
#   2. the quick suite with --workers 1, then --workers auto, each with a store and a
#      compilation cache of its own (cells and trials done in the time, or its wall time);
#                                                                                 <= 2 x 60 s
#   3. the cost probe, L = 512, 2048, 8192: fp32 over lstm, transformer (the crossover's
#      pair first), gru, minlstm, mingru, lru; bf16 with fused attention over lstm and
#      transformer; an interrupted probe records the families it finished.      <= 45 + 30 s
# OUT receives at most 8 files, flat: gpu-check.log (every step's output and time),
# backends.json/.md, and the stores workers-1.db, workers-auto.db, cost.db. The stores are
# written in a scratch folder (the model artifacts beside them stay there and are deleted)
# and copied into OUT after each step. `harness report` / `harness probe report`
# --tracking-uri sqlite:///OUT/X.db turn them into reports/gpu/ (see docs/gpu.md).
# Without a GPU, nvidia-smi or the bundle it still runs (on the CPU), and says so.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:?usage: scripts/gpu_check.sh OUT}")
TOTAL=${GPU_CHECK_SECONDS:-290}
GRACE=5
PY=${PYTHON:-python3}
START=$(date +%s)
mkdir -p "$OUT"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
LOG="$OUT/gpu-check.log"
: >"$LOG"
say() { echo "$*" | tee -a "$LOG"; }

step() {  # step NAME SECONDS COMMAND...: run under a limit cut to the time left; log it
    local name=$1 limit=$2 started code left
    shift 2
    left=$((TOTAL - ($(date +%s) - START) - GRACE))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -lt 5 ]; then
        say "== $name: skipped, ${left} s left of ${TOTAL} s"
        return
    fi
    say "== $name (limit ${limit} s): $*"
    started=$(date +%s)
    timeout --signal=INT --kill-after=$GRACE "$limit" "$@" >>"$LOG" 2>&1
    code=$?
    say "== $name: exit $code after $(($(date +%s) - started)) s$([ $code -eq 124 ] && echo ' (time limit)')"
}

keep() {  # keep NAME: copy the scratch store NAME.db into OUT (consistent after a kill too)
    [ -f "$SCRATCH/$1.db" ] || return 0
    "$PY" -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))' \
        "$SCRATCH/$1.db" "$OUT/$1.db" >>"$LOG" 2>&1 || say "== $1.db: not copied"
}

if [ -d .whl ]; then
    step "wheel bundle" 40 "$PY" -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=$PWD:/tmp/site
else
    say "== wheel bundle: no .whl/ here, the installed packages are used"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version --format=csv >>"$LOG" 2>&1 \
    || say "== nvidia-smi: none here, or it failed"
git rev-parse HEAD >>"$LOG" 2>&1 || true
step versions 20 "$PY" -c "import jax, keras; print('jax', jax.__version__, jax.devices(), '| keras', keras.__version__)"

step backends 50 "$PY" benchmarks/gpu_backends.py --lengths 1000 --backends jax torch \
    --families lstm gru transformer --variants fp32 bf16 --epochs 2 --examples 2048 \
    --out "$OUT" --stem backends

for workers in 1 auto; do
    step "quick suite, --workers $workers" 60 "$PY" -m harness run --suite quick \
        --workers "$workers" --workdir "$SCRATCH/work-$workers" \
        --tracking-uri "sqlite:///$SCRATCH/workers-$workers.db"
    keep "workers-$workers"
    step "quick suite, --workers $workers: status" 15 "$PY" -m harness status --suite quick \
        --tracking-uri "sqlite:///$SCRATCH/workers-$workers.db"
done

step "cost probe, fp32" 45 "$PY" -m harness probe cost --precision fp32 \
    --families lstm,transformer,gru,minlstm,mingru,lru --lengths 512,2048,8192 \
    --experiment cost-fp32 --tracking-uri "sqlite:///$SCRATCH/cost.db"
keep cost
step "cost probe, bf16" 30 "$PY" -m harness probe cost --precision bf16 \
    --families lstm,transformer --lengths 512,2048,8192 \
    --experiment cost-bf16 --tracking-uri "sqlite:///$SCRATCH/cost.db"
keep cost
say "== done after $(($(date +%s) - START)) s: $(ls "$OUT" | tr '\n' ' ')"
