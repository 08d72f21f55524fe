#!/usr/bin/env bash
# Every figure BENCHMARKS.md still marks as pending a GPU, in one go on one GPU (about 60 minutes
# on one H100), each step under its own time limit so one slow step cannot starve the rest:
#
#   bash benchmarks/gpu_figures.sh [CIFAR10_DIR] [OUT_DIR]
#
# CIFAR10_DIR: CIFAR-10 as npz (train_*.npz, test.npz), default ../shared/data/cifar10.
# OUT_DIR: where each step's JSON and log go (default gpu-figures-DATE); paste the printed
# summary into BENCHMARKS.md beside the rows marked "GPU: not measured".
set -u
DATA=${1:-../shared/data/cifar10}
OUT=${2:-gpu-figures-$(date +%Y%m%d-%H%M)}
PY=${PYTHON:-.venv/bin/python}
MNAS=${MNAS:-.venv/bin/mnas}
mkdir -p "$OUT"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: no CUDA device visible to torch; these figures need a GPU (mnas doctor shows what this machine has)" >&2
  exit 2
fi

step() {  # step NAME MINUTES COMMAND...: run one figure, keep its log and exit status
  local name=$1 minutes=$2; shift 2
  echo "== $name (at most $minutes min)"
  local t0=$SECONDS
  timeout "${minutes}m" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.log"
}

step doctor 8 bash -c "\"$MNAS\" doctor --gpu --json > \"$OUT/doctor.json\""
step proxy-throughput-naive 12 "$PY" benchmarks/proxy_throughput.py --data "$DATA" --paths naive --json "$OUT/throughput-naive.json"
step proxy-throughput-optimized 10 "$PY" benchmarks/proxy_throughput.py --data "$DATA" --paths optimized --json "$OUT/throughput-optimized.json"
"$PY" benchmarks/proxy_throughput.py --combine "$OUT/throughput-naive.json" "$OUT/throughput-optimized.json" > "$OUT/throughput.txt" 2>&1
step oneshot-cifar10-gpu 12 "$PY" benchmarks/oneshot.py cifar10-gpu --data "$DATA" --out "$OUT/oneshot" --json "$OUT/oneshot-gpu.json"
step proxy-design-cifar10-gpu 12 "$PY" benchmarks/proxy_design.py cifar10-gpu --data "$DATA" --out "$OUT/proxy-design" --json "$OUT/proxy-design-gpu.json"
step shards-vs-folder 6 "$PY" benchmarks/data_shards.py --data "$DATA" --json "$OUT/shards-gpu.json"
echo "== summary (machine: $("$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); from _machine import machine_line; print(machine_line())"))"
cat "$OUT/summary.txt" "$OUT/throughput.txt"
