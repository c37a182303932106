#!/usr/bin/env bash
# Try a distributed search on one machine: a local `mlflow server`, a chief and
# WORKERS workers, all on 127.0.0.1. Logs and stores go to data/distributed-demo/.
# Usage: scripts/distributed_demo.sh [WORKERS]   (or: make distributed-demo WORKERS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${1:-${WORKERS:-2}}
DEMO=data/distributed-demo
MLFLOW_PORT=${MLFLOW_PORT:-5001}
CHIEF=${CHIEF:-127.0.0.1:8470}
URI="http://127.0.0.1:$MLFLOW_PORT"
RUN=(run --task adding --length 20 --family gru --max-trials $((2 * WORKERS + 2)) --epochs 3
     --n-train 512 --experiment distributed-demo --workdir "$DEMO" --tracking-uri "$URI")

mkdir -p "$DEMO"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
.venv/bin/mlflow server --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
  --backend-store-uri "sqlite:///$PWD/$DEMO/server.db" \
  --artifacts-destination "$PWD/$DEMO/server-artifacts" > "$DEMO/mlflow.log" 2>&1 &
pids+=($!)
for _ in $(seq 60); do
  .venv/bin/python -c "import urllib.request; urllib.request.urlopen('$URI/health')" 2>/dev/null && break
  sleep 1
done
echo "mlflow server on $URI; chief on $CHIEF; $WORKERS workers; logs in $DEMO/"

.venv/bin/harness "${RUN[@]}" --chief "$CHIEF" > "$DEMO/chief.log" 2>&1 &
chief=$!
for i in $(seq 0 $((WORKERS - 1))); do
  .venv/bin/harness "${RUN[@]}" --chief "$CHIEF" --worker "tuner$i" > "$DEMO/worker$i.log" 2>&1 &
  pids+=($!)
done
wait "$chief"
wait "${pids[@]:1}"
tail -n 8 "$DEMO/chief.log"
echo "browse the runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///$PWD/$DEMO/server.db"
