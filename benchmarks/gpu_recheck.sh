#!/usr/bin/env bash
# Targeted re-check after a full gpu_check.sh run (one short lease): the triton/reference GPU
# tests and the 256^2 whole-call benchmark while the extension builds, then the cuda tests,
# a backtrace of the argument-check crash, racecheck with a longer budget, and the Set5
# quality/latency check.  Usage: benchmarks/gpu_recheck.sh OUTDIR
set -uo pipefail
OUT=${1:?usage: benchmarks/gpu_recheck.sh OUTDIR}
mkdir -p "$OUT"; cd "$(dirname "$0")/.."
source scripts/python_env.sh  # PY: $PYTHON, else .venv/bin/python, else python3 (the GPU image's torch)
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} MZSR_FAST_CUDA_ARCHS=${MZSR_FAST_CUDA_ARCHS:-90}
S="$OUT/summary.txt"; : > "$S"
( "$PY" -m pip install --no-build-isolation --no-deps --no-index -v -e . > "$OUT/install.log" 2>&1; echo "install rc=$?" >> "$OUT/install.log" ) &
MZSR_FAST_NO_EXT=1 timeout 120 "$PY" -m pytest tests -m gpu -q -p no:cacheprovider -n 4 -k "not test_cuda_backend and not cuda-cuda" \
  > "$OUT/tests_triton.log" 2>&1; echo "tests triton/reference rc=$?" >> "$S"; tail -4 "$OUT/tests_triton.log" >> "$S"
MZSR_FAST_NO_EXT=1 MZSR_BENCH_SIZES=256 MZSR_BENCH_WHOLE=256 MZSR_BENCH_STEPS=1,10 MZSR_BENCH_ROUNDS=10 timeout 150 \
  "$PY" -m pytest benchmarks/bench_adapt.py --benchmark-only -q -p no:cacheprovider -k "reference_tf32 or triton" \
  --benchmark-json "$OUT/bench_256.json" --benchmark-columns=median,min,rounds 2>&1 | grep -E "^test_|passed|failed" >> "$S"
wait; tail -1 "$OUT/install.log" >> "$S"
timeout 90 "$PY" -m pytest tests/test_cuda_backend.py -m gpu -q -p no:cacheprovider -rfE > "$OUT/tests_cuda.log" 2>&1
echo "tests cuda rc=$?" >> "$S"; tail -8 "$OUT/tests_cuda.log" >> "$S"
{ timeout 60 "$PY" -X faulthandler benchmarks/cuda_argcheck_repro.py; echo "repro rc=$?"
  timeout 90 cuda-gdb -q -batch -ex run -ex bt --args "$PY" benchmarks/cuda_argcheck_repro.py 2>&1 | grep -vE "^\[(New|Thread|Detaching)" | tail -40
} >> "$S" 2>&1
timeout 150 compute-sanitizer --tool racecheck --error-exitcode 3 "$PY" benchmarks/cuda_sanitize.py > "$OUT/racecheck.log" 2>&1
echo "racecheck rc=$?" >> "$S"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard" "$OUT/racecheck.log" | head -5 >> "$S"
W=runs/gpu/mzsr_x2_direct.safetensors; [ -f "$W" ] || W=
timeout 80 "$PY" benchmarks/gpu_quality.py --out "$OUT/quality.json" ${W:+--weights $W} 2>&1 | tail -11 >> "$S"
cat "$S"
