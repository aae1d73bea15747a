#!/usr/bin/env bash
# GPU evidence in one go (docs/design.md §6): build the extension here, run the CUDA-marked and Triton tests on the
# GPU, run the GPU benchmarks, and leave logs and JSON in OUTDIR with a short table at the end.
# Usage: scripts/gpu_check.sh [OUTDIR]   (default gpu-check/). NCL_GPU_BUDGET (seconds, default 540) bounds the
# whole script: each step gets at most what is left of it, the steps come in order of importance, and a step
# that would start with under 20 s left is skipped, so the table at the end always prints inside a lease.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET  # real GPU kernels here
status=()
BUDGET=${NCL_GPU_BUDGET:-540}
START=$(date +%s)
run() {  # run NAME TIMEOUT CMD...: log to $OUT/NAME.log, remember the exit code
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  local left=$(( BUDGET - (t0 - START) - 10 ))
  if (( left < 20 )); then status+=("$name skipped(budget) 0s"); echo "== $name: skipped (budget)"; return; fi
  (( limit > left )) && limit=$left
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
# Tests in parallel where pytest-xdist is there: Triton's compiles are CPU-bound, and the card has room for all.
PYTEST_ARGS=$($PY -c 'import xdist' 2>/dev/null && echo "-n 8" || echo "")
# The layering test needs import-linter's grimp, which the GPU machine's image lacks; it checks no GPU code.
PYTEST_ARGS="$PYTEST_ARGS --ignore=tests/test_architecture.py"
run tests 180 $PY -m pytest -q $PYTEST_ARGS --maxfail=30 tests -m cuda -p no:cacheprovider -rf
run bench_machine 150 sh -c "$PY -m ncl.cli bench machine --json > '$OUT/bench_machine.json'"
# The same run's kernels against the host's part of each call: what the 0.21 ms a step of the first H200 run was.
run machine_profile 90 $PY scripts/machine_profile.py --json "$OUT/machine_profile.json"
# The whole run at 8, 32 and 128 samples with 4/8 (the defaults), 8 and 16 warps a program: one program runs one
# sample, so a small batch leaves SMs idle (ncl_kernels.machine.triton.launch_warps).
run machine_warps 120 $PY scripts/machine_warps.py --json "$OUT/machine_warps.json"
run tests_triton 150 $PY -m pytest -q $PYTEST_ARGS --maxfail=30 tests -k triton -m "not cuda" -p no:cacheprovider -rf
run bench_memory 90 sh -c "$PY -m ncl.cli bench memory --json > '$OUT/bench_memory.json'"
# One pytest run per benchmark file, in order of interest, so a lease that ends midway keeps the files done (the
# whole suite did not fit in the first H200 lease: each group compiles its torch.compile reference first).
for f in soft_read soft_write content_address machine_fused machine alu_mix stack_update control halting \
         alu_circuit_mix machine_eager llama; do
  NCL_BENCH_OUT="$OUT/pytest_$f" run "pytest_$f" 90 $PY -m pytest -q -s "benchmarks/test_$f.py" \
    --benchmark-json="$OUT/pytest_$f.json" -p no:cacheprovider
done

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
