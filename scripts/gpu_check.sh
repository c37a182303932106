#!/usr/bin/env bash
# The GPU check: one command, at most about 5 minutes, on a GPU machine with the wheel
# bundle (scripts/gpu_wheels.sh) in .whl/ beside the checkout and no network.
#
#   scripts/gpu_check.sh OUT     # e.g. the device tool's "$OUT"
#
# It installs the bundle, then, each under its own time limit:
#   1. the backend benchmark: epoch time per backend vs a bare cuDNN loop, the fused
#      kernels as observed (benchmarks/gpu_backends.py);                        <= 50 s
#   2. the quick suite with --workers 1, then with --workers auto, each in a store of
#      its own (cells and trials done in the time, or the wall time if it finishes); <= 2 x 75 s
#   3. the cost probe in fp32 and in bf16 with fused attention, synchronised timings,
#      the recurrent, parallel-scan and attention families;                   <= 2 x 35 s
# and writes under OUT (at most 8 files, flat): gpu-check.log (every step's output and
# timing), backends.json/.md, and the stores workers-1.db, workers-auto.db, cost.db.
# `harness report`/`probe report --tracking-uri sqlite:///OUT/X.db` turn them into
# reports/gpu/ (see README, GPU runs). A step that runs out of time is recorded as such
# and the check goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=$(realpath -m "${1:?usage: scripts/gpu_check.sh OUT}")
mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
: >"$LOG"
say() { echo "$*" | tee -a "$LOG"; }

step() {  # step NAME SECONDS COMMAND...: run with a limit, log its output and wall time
    local name=$1 limit=$2 started code
    shift 2
    say "== $name (limit ${limit} s): $*"
    started=$(date +%s)
    timeout --signal=INT --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
    code=$?
    say "== $name: exit $code after $(($(date +%s) - started)) s$([ $code -eq 124 ] && echo ' (time limit)')"
}

if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl >>"$LOG" 2>&1 || say "wheel bundle: install failed"
    export PYTHONPATH=/tmp/site:$PWD
fi
export KERAS_BACKEND=jax
nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version --format=csv >>"$LOG" 2>&1
python3 -c "import jax, keras, torch; print('jax', jax.__version__, jax.devices(), '| keras', keras.__version__, '| torch', torch.__version__)" >>"$LOG" 2>&1
git rev-parse HEAD >>"$LOG" 2>&1 || true

step backends 50 python3 benchmarks/gpu_backends.py --lengths 100 1000 \
    --families lstm gru transformer --variants fp32 bf16 --epochs 3 --examples 4096 --out "$OUT"
for f in "$OUT"/*.json "$OUT"/*.md; do  # the benchmark names its files after the GPU
    case $f in *backends*) ;; *.json) mv "$f" "$OUT/backends.json" ;; *.md) mv "$f" "$OUT/backends.md" ;; esac
done

for workers in 1 auto; do
    work=$(mktemp -d)
    step "quick suite, --workers $workers" 75 python3 -m harness run --suite quick \
        --workers "$workers" --workdir "$work" --tracking-uri "sqlite:///$OUT/workers-$workers.db"
    python3 -m harness status --suite quick --tracking-uri "sqlite:///$OUT/workers-$workers.db" \
        2>&1 | tail -n 1 | sed "s/^/== quick suite, --workers $workers: /" | tee -a "$LOG"
    rm -rf "$work"
done

for precision in fp32 bf16; do
    step "cost probe, $precision" 35 python3 -m harness probe cost --precision "$precision" \
        --families lstm,gru,mingru,lru,transformer --lengths 256,1024,4096,16384 \
        --experiment "cost-$precision" --tracking-uri "sqlite:///$OUT/cost.db"
done
say "== done: $(ls "$OUT" | tr '\n' ' ')"
