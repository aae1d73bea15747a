#!/usr/bin/env bash
# GPU evidence in one go (docs/design.md §6): build the extension here, run the CUDA-marked and Triton tests on the
# GPU, run the GPU benchmarks, and leave logs and JSON in OUTDIR with a short table at the end.
# Usage: scripts/gpu_check.sh [OUTDIR]   (default gpu-check/). Must finish in < 8 min on an H100.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET  # real GPU kernels here
status=()
run() {  # run NAME TIMEOUT CMD...: log to $OUT/NAME.log, remember the exit code
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  status+=("$name rc=$rc $(( $(date +%s) - t0 ))s")
  echo "== $name: rc=$rc ($(( $(date +%s) - t0 ))s)"; tail -n 5 "$OUT/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
# Build for the local GPU only: fastest, and what the user of this card gets.
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$($PY -c 'import torch; m,n=torch.cuda.get_device_capability(); print(f"{m}.{n}" + ("a" if m >= 9 else ""))')}
export MAX_JOBS=${MAX_JOBS:-16}
run build 300 $PY setup.py build_ext --inplace
run info 60 $PY -m ncl.cli info --json
run tests 240 $PY -m pytest -q -x tests -m cuda -p no:cacheprovider
run tests_triton 240 $PY -m pytest -q tests -k triton -p no:cacheprovider
NCL_BENCH_OUT="$OUT" run bench_pytest 240 $PY -m pytest -q benchmarks --benchmark-json="$OUT/benchmarks.json" -p no:cacheprovider
run bench_memory 180 sh -c "$PY -m ncl.cli bench memory --json > '$OUT/bench_memory.json'"
run bench_machine 240 sh -c "$PY -m ncl.cli bench machine --json > '$OUT/bench_machine.json'"

echo
echo "| step | result |"
echo "|---|---|"
for s in "${status[@]}"; do echo "| ${s%% *} | ${s#* } |"; done
$PY - "$OUT" <<'PYEOF'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
try:
    rows = json.loads((out / "bench_memory.json").read_text())
except Exception as exc:
    print(f"(no bench_memory table: {exc})"); sys.exit(0)
from ncl_kernels.benchmarking import format_table
print(format_table(rows))
PYEOF
