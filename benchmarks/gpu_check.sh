#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, torch already installed and no network,
# install mzsr_fast from this working tree (no download), run every GPU test (the shared
# backend suite on CUDA, the Triton and CUDA kernel tests), compute-sanitizer over one
# small CUDA-backend adaptation, the benchmarks and the Set5 quality/latency check, and
# write the results to OUTDIR:
#   summary.txt (environment, phase times, test/benchmark tails)  install.log  tests.log  sanitizer.log
#   bench_adapt.json  quality.json  bench_cuda_ops.json      (7 files)
# Usage: benchmarks/gpu_check.sh OUTDIR     (budgeted to about 8 minutes on an H100)
# Weights for the quality check: $MZSR_QUALITY_WEIGHTS (default: the shipped ones).
# Data: $MZSR_FAST_DATA (set5, set5_g20), default ../shared/data.
# Budgets (s) per phase can be overridden: T_INSTALL T_TESTS T_SAN T_BENCH T_QUALITY.
set -uo pipefail
OUT=${1:?usage: benchmarks/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
PY=${PYTHON:-python3}
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
phase() {  # phase NAME BUDGET CMD... : run with a time limit, record status and seconds
  local name=$1 budget=$2; shift 2
  local t0=$(date +%s)
  timeout --kill-after=10 "$budget" "$@"
  local rc=$?
  note "phase $name: rc=$rc ($(( $(date +%s) - t0 )) s, budget $budget s)"
  return $rc
}
T0=$(date +%s)

{ date -u; nvidia-smi; $PY -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  $PY -c "import triton; print('triton', triton.__version__)"; nvcc --version | tail -2; } >> "$SUMMARY" 2>&1

# 1. install from the working tree, offline; builds _C with the CUDA sources (nvcc, sm_90)
export MZSR_FAST_CUDA_ARCHS=${MZSR_FAST_CUDA_ARCHS:-90}
phase install "${T_INSTALL:-150}" $PY -m pip install --no-build-isolation --no-deps --no-index -v -e . > "$OUT/install.log" 2>&1 \
  || { note "install FAILED: continuing without the compiled extension"; tail -40 "$OUT/install.log"; }
$PY -m mzsr_fast.cli info 2>&1 | tee -a "$SUMMARY"

# 2. tests on CUDA: every gpu-marked test (shared backend suite, triton, cuda)
# 4 workers when pytest-xdist is there: the Triton/CUDA tests are dominated by kernel
# compilation, which is CPU work and parallelises; autotuning is skipped in the tests (the
# benchmarks and the quality check below run the tuned configurations).
XDIST=""; $PY -c "import xdist" 2>/dev/null && XDIST="-n ${TEST_WORKERS:-4}"
MZSR_TRITON_AUTOTUNE=0 phase tests "${T_TESTS:-150}" $PY -m pytest tests -m gpu -q --no-header -p no:cacheprovider -rfE \
  --maxfail=30 $XDIST > "$OUT/tests.log" 2>&1
tail -25 "$OUT/tests.log" | tee -a "$SUMMARY"

# 3. compute-sanitizer over one small eager adaptation of the cuda backend
if [ -f benchmarks/cuda_sanitize.py ] && command -v compute-sanitizer >/dev/null; then
  { for tool in memcheck racecheck; do
      echo "== compute-sanitizer --tool $tool"
      timeout 40 compute-sanitizer --tool $tool --error-exitcode 3 $PY benchmarks/cuda_sanitize.py
      echo "rc=$?"
    done; } > "$OUT/sanitizer.log" 2>&1
  grep -E "^(== |rc=)|ERROR SUMMARY" "$OUT/sanitizer.log" | tee -a "$SUMMARY"
fi

# 4. benchmarks: step and whole call, reference (cuDNN) vs compile vs triton vs cuda
MZSR_BENCH_ROUNDS=${MZSR_BENCH_ROUNDS:-5} phase bench "${T_BENCH:-150}" $PY -m pytest benchmarks/bench_adapt.py --benchmark-only -q --no-header -p no:cacheprovider \
  --benchmark-json "$OUT/bench_adapt.json" --benchmark-columns=median,min,rounds > /tmp/mzsr_bench.log 2>&1
grep -E "^test_|passed|failed|rror" /tmp/mzsr_bench.log | tail -80 >> "$SUMMARY"

# 5. quality + latency on Set5 g^d_2.0 with the shipped weights
phase quality "${T_QUALITY:-80}" $PY benchmarks/gpu_quality.py --out "$OUT/quality.json" 2>&1 | tail -15 | tee -a "$SUMMARY"

# 6. per-op CUDA kernels vs cuDNN (both tensor-core warp layouts), if time is left
[ -f benchmarks/bench_cuda_ops.py ] && phase ops "${T_OPS:-40}" $PY -m pytest benchmarks/bench_cuda_ops.py --benchmark-only -q \
  --no-header -p no:cacheprovider --benchmark-json "$OUT/bench_cuda_ops.json" --benchmark-columns=median,min > /tmp/mzsr_ops.log 2>&1
grep -E "^test_|passed|failed|rror" /tmp/mzsr_ops.log | tail -60 >> "$SUMMARY"

# 7. optional (MZSR_GPU_VS_ZSSR=1): the full MZSR-vs-ZSSR report on Set5 g^d_2.0 on the GPU
# (about 10-30 s of ZSSR per image expected on an H100, not yet measured; partial reports are
# rewritten after every image)
if [ "${MZSR_GPU_VS_ZSSR:-0}" = "1" ]; then
  # the device returns at most 8 files: the markdown goes into summary.txt, the JSON to OUTDIR
  mkdir -p /tmp/mzsr_vs_zssr
  phase vs_zssr "${T_VSZSSR:-300}" $PY benchmarks/report_vs_zssr.py --device cuda --out-dir /tmp/mzsr_vs_zssr --tag _gpu \
    > /tmp/mzsr_vs_zssr.log 2>&1
  cat /tmp/mzsr_vs_zssr/*.md >> "$SUMMARY" 2>/dev/null || tail -20 /tmp/mzsr_vs_zssr.log >> "$SUMMARY"
  cp /tmp/mzsr_vs_zssr/*.json "$OUT/" 2>/dev/null
fi

note "gpu_check total $(( $(date +%s) - T0 )) s"
