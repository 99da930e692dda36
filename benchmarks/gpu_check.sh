#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, torch already installed and no network,
# install mzsr_fast from this working tree (no download), run every GPU test (the shared
# backend suite on CUDA, the Triton and CUDA kernel tests), compute-sanitizer over one
# small CUDA-backend adaptation, the benchmarks (benchmarks/{e2e,ops,quality}: the
# interleaved whole call, the backend ops, Set5 quality per provider, the per-conv kernels),
# and write the results to OUTDIR (at most 8 files, what the device tool returns):
#   summary.txt (environment, phase times, test/benchmark/sanitizer tails)  tests.log
#   results.csv (the benchmarks' rows: append them to benchmarks/results/<machine>.csv,
#       e.g. tail -n +2 OUTDIR/results.csv >> benchmarks/results/h100.csv)
#   e2e.json  ops.json  quality.json  conv3x3.json (pytest-benchmark JSON, machine info)
#   extra.tgz (install.log, sanitizer.log, breakdown.json: per-kernel device time per
#       provider, and the optional training/eval outputs)
# Usage: benchmarks/gpu_check.sh OUTDIR     (about 6 minutes on an H100 without training)
# Optional phases:
#   MZSR_GPU_TRAIN="--time-budget 230 --data DIR ..." : scripts/gpu_train.sh with these flags,
#       started first, in the background (GPU training while the install and the tests run,
#       which are mostly CPU work); the benchmarks wait for it so that they time a quiet GPU.
#   MZSR_GPU_EVAL=1 : `mzsr-fast eval` of Set5 and Set14 (if present) in the four x2
#       settings with the shipped weights (and the trained x2 direct file, if any).
#   MZSR_GPU_VS_ZSSR=1 : the full MZSR-vs-ZSSR report on Set5 g^d_2.0.
# Weights for the quality check: $MZSR_QUALITY_WEIGHTS (default: the shipped ones).
# Data: $MZSR_FAST_DATA (set5, set5_g20[, set14]), default ../shared/data.
# Budgets (s) per phase can be overridden: T_INSTALL T_TESTS T_TESTS_V2 T_BENCH T_OPS T_QUALITY T_BREAKDOWN
# T_CONV T_EVAL_END.
# Dry run of the script's logic on a CPU machine: MZSR_GPU_SKIP_INSTALL=1 PYTHON=.venv/bin/python.
set -uo pipefail
OUT=${1:?usage: benchmarks/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
source scripts/python_env.sh  # PY: $PYTHON, else .venv/bin/python, else python3 (the GPU image's torch)
X=/tmp/mzsr_extra; rm -rf "$X"; mkdir -p "$X"   # goes back as extra.tgz
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; }
phase() {  # phase NAME BUDGET CMD... : run with a time limit, record status and seconds
  local name=$1 budget=$2; shift 2
  local t0=$(date +%s)
  timeout --kill-after=10 "$budget" "$@"
  local rc=$?
  note "phase $name: rc=$rc ($(( $(date +%s) - t0 )) s, budget $budget s, at $(( $(date +%s) - T0 )) s)"
  return $rc
}
pack() { tar czf "$OUT/extra.tgz" --exclude=ckpt.pt -C "$X" . 2>/dev/null; }
trap pack EXIT
T0=$(date +%s)

{ date -u; nvidia-smi; $PY -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  $PY -c "import triton; print('triton', triton.__version__)"; nvcc --version | tail -2; } >> "$SUMMARY" 2>&1

# 0. optional training, in the background from the start
TRAIN_PID=""
if [ -n "${MZSR_GPU_TRAIN:-}" ]; then
  mkdir -p "$X/train"
  # shellcheck disable=SC2086
  bash scripts/gpu_train.sh "$X/train" $MZSR_GPU_TRAIN > "$X/train/stdout.log" 2>&1 &
  TRAIN_PID=$!
  note "training started (pid $TRAIN_PID): $MZSR_GPU_TRAIN"
fi

# 1. install from the working tree, offline; builds _C with the CUDA sources (nvcc, sm_90).
# The C++ compiler: the system g++ when there is one (MZSR_GPU_KEEP_CXX=1 keeps $CXX).  The
# GPU image sets CXX=/opt/gcc/bin/g++, which linked the extension without a shared libstdc++:
# any TORCH_CHECK message with an integer then segfaulted.  With /usr/bin/g++ (13.3, the same
# version) the extension links /lib/x86_64-linux-gnu/libstdc++.so.6, the messages are raised
# as exceptions and all 180 cuda backend tests pass (H100, 2026-11-26,
# benchmarks/results/gpu_20261126_h100_s2/install2.log).
export MZSR_FAST_CUDA_ARCHS=${MZSR_FAST_CUDA_ARCHS:-90}
if [ "${MZSR_GPU_KEEP_CXX:-0}" != "1" ] && [ -x /usr/bin/g++ ]; then export CXX=/usr/bin/g++ CC=/usr/bin/gcc; fi
note "compilers: CXX=${CXX:-default} ($(${CXX:-g++} --version 2>/dev/null | head -1)); which g++: $(command -v g++)"
[ "${MZSR_GPU_SKIP_INSTALL:-0}" = "1" ] && INSTALL_CMD=true || INSTALL_CMD="$PY -m pip install"
( phase install "${T_INSTALL:-150}" $INSTALL_CMD --no-build-isolation --no-deps --no-index -v -e . > "$X/install.log" 2>&1 \
    || { note "install FAILED: continuing without the compiled extension"; tail -30 "$X/install.log" >> "$SUMMARY"; } ) &
INSTALL_PID=$!

# 2. tests on CUDA: every gpu-marked test (shared backend suite, triton, cuda).  The
# triton/reference ones run while the extension builds (MZSR_FAST_NO_EXT=1), the cuda ones
# after.  4 workers when pytest-xdist is there: the Triton tests are dominated by kernel
# compilation, which is CPU work and parallelises; autotuning is skipped in the tests (the
# benchmarks and the quality check below run the tuned configurations).
XDIST=""; $PY -c "import xdist" 2>/dev/null && XDIST="-n ${TEST_WORKERS:-4}"
MZSR_FAST_NO_EXT=1 MZSR_TRITON_AUTOTUNE=0 phase tests_triton "${T_TESTS:-150}" $PY -m pytest tests -m gpu -q --no-header \
  -p no:cacheprovider -rfE --maxfail=30 $XDIST -k "not test_cuda_backend and not cuda-cuda" > "$OUT/tests.log" 2>&1
tail -15 "$OUT/tests.log" | tee -a "$SUMMARY"
wait "$INSTALL_PID"
$PY -m mzsr_fast.cli info 2>&1 | tee -a "$SUMMARY"
{ echo "== ldd of the extension"; ldd mzsr_fast/_C*.so 2>&1 | grep -E "stdc|gcc_s|torch" ; } >> "$SUMMARY" 2>&1
MZSR_TRITON_AUTOTUNE=0 phase tests_cuda "${T_TESTS:-150}" $PY -m pytest tests -m gpu -q --no-header -p no:cacheprovider \
  -rfE --maxfail=30 $XDIST -k "test_cuda_backend or cuda-cuda" >> "$OUT/tests.log" 2>&1
tail -15 "$OUT/tests.log" | tee -a "$SUMMARY"
# the shared backend suite again with conv kernel variants 2 (conv3x3_halo.cu) and 3 (the
# same kernels, bf16 activations); the op-level tests above cover them through the
# "bf16:2" / "bf16:3" precision strings
for v in 2 3; do
  echo "== MZSR_FAST_CUDA_VARIANT=$v: shared backend suite" >> "$OUT/tests.log"
  MZSR_FAST_CUDA_VARIANT=$v MZSR_TRITON_AUTOTUNE=0 phase tests_cuda_v$v "${T_TESTS_V2:-60}" $PY -m pytest tests -m gpu -q \
    --no-header -p no:cacheprovider -rfE --maxfail=30 $XDIST -k "cuda-cuda" >> "$OUT/tests.log" 2>&1
  tail -4 "$OUT/tests.log" | tee -a "$SUMMARY"
done
{ echo "== argument-check message (an int in a TORCH_CHECK message; segfaulted with the /opt/gcc build)"
  timeout 60 $PY scripts/cuda_argcheck_repro.py 2>&1 | tail -6; echo "repro rc=$?"; } >> "$SUMMARY" 2>&1

# 3. compute-sanitizer over one small eager adaptation of the cuda backend
if [ -f scripts/cuda_sanitize.py ] && command -v compute-sanitizer >/dev/null; then
  { for v in 0 2 3; do for tool in memcheck racecheck; do
      echo "== compute-sanitizer --tool $tool, MZSR_FAST_CUDA_VARIANT=$v"
      MZSR_FAST_CUDA_VARIANT=$v timeout 90 compute-sanitizer --tool $tool --error-exitcode 3 $PY scripts/cuda_sanitize.py
      echo "rc=$?"
    done; done; } > "$X/sanitizer.log" 2>&1
  grep -E "^(== |rc=)|ERROR SUMMARY|RACECHECK SUMMARY" "$X/sanitizer.log" | tee -a "$SUMMARY"
fi

# (training must be over before anything is timed)
if [ -n "$TRAIN_PID" ]; then
  wait "$TRAIN_PID"; note "training rc=$? at $(( $(date +%s) - T0 )) s"
  tail -12 "$X/train/recipe.log" >> "$SUMMARY" 2>/dev/null
fi

# 4-7. benchmarks (one harness: benchmarks/harness.py), rows into $OUT/results.csv.
# pytest-benchmark runs with the project's addopts (--benchmark-skip) overridden by --benchmark-only.
export MZSR_BENCH_ROUNDS=${MZSR_BENCH_ROUNDS:-5}
BENCH_ARGS=(--benchmark-only -q --no-header -p no:cacheprovider --results-csv "$OUT/results.csv")
bench() {  # bench NAME BUDGET JSON PYTEST_ARGS... : one benchmark phase, its log in extra.tgz
  local name=$1 budget=$2 json=$3; shift 3
  phase "$name" "$budget" $PY -m pytest "$@" "${BENCH_ARGS[@]}" --benchmark-json "$OUT/$json" \
    --benchmark-columns=median,min,rounds > "$X/$name.log" 2>&1
  grep -E "^test_|passed|failed|rror|rows appended" "$X/$name.log" | tail -80 >> "$SUMMARY"
}
note "results table rows -> $OUT/results.csv (machine kind: $($PY -c 'from benchmarks.harness import machine_kind; print(machine_kind())' 2>&1))"
# 4. the whole call, interleaved rounds, reference (cuDNN) / nn.Module / triton / cuda in one run
bench e2e "${T_BENCH:-150}" e2e.json benchmarks/e2e
# 5. the backends' step and upscale ops per provider
bench ops "${T_OPS:-90}" ops.json benchmarks/ops/test_backend_ops.py
# 6. quality + latency on Set5 g^d_2.0 per provider (shipped weights)
export MZSR_BENCH_QUALITY_SETTINGS=${MZSR_BENCH_QUALITY_SETTINGS:-g^d_2.0}
bench quality "${T_QUALITY:-80}" quality.json benchmarks/quality/test_quality.py
grep -E "psnr_y" "$OUT/results.csv" 2>/dev/null | tail -12 >> "$SUMMARY"

# 6b. where the time goes: per-kernel device time of one eager adaptation + upscale per
# provider (cuda variants 0/2/3, triton, cuDNN), into extra.tgz; the totals into the summary
phase breakdown "${T_BREAKDOWN:-90}" $PY benchmarks/kernel_breakdown.py --out "$X/breakdown.json" 2>&1 | tail -12 | tee -a "$SUMMARY"

# 7. per-conv CUDA kernels vs cuDNN (both tensor-core warp layouts, variant 2), if time is left
bench conv3x3 "${T_CONV:-40}" conv3x3.json benchmarks/ops/test_conv3x3.py

# 8. optional: eval tables (Set5/Set14 x the four x2 settings)
if [ "${MZSR_GPU_EVAL:-0}" = "1" ]; then
  D=${MZSR_FAST_DATA:-../shared/data}
  mkdir -p "$X/eval"
  for set in set5 set14; do
    [ -d "$D/$set" ] || continue
    for s in "g^d_0.2" "g^d_2.0" "g^d_ani" "g^b_1.3"; do
      [ $(( $(date +%s) - T0 )) -lt "${T_EVAL_END:-520}" ] || { note "eval: out of time before $set $s"; break 2; }
      tag=$(echo "$s" | tr -d '^.')
      # the exact fp32 reference (cuDNN, TF32 off): the table is about the weights, not a backend
      timeout 60 $PY -m mzsr_fast.cli eval --hr-dir "$D/$set" --setting "$s" --steps 0,1,10 --backend reference --precision fp32 \
        --json "$X/eval/${set}_${tag}_shipped.json" > "$X/eval/${set}_${tag}_shipped.txt" 2>&1
      W="$X/train/mzsr_x2_direct.safetensors"
      if [ -f "$W" ] && [ "$s" != "g^b_1.3" ]; then
        timeout 60 $PY -m mzsr_fast.cli eval --hr-dir "$D/$set" --setting "$s" --steps 0,1,10 --backend reference --precision fp32 --weights "$W" \
          --json "$X/eval/${set}_${tag}_trained.json" > "$X/eval/${set}_${tag}_trained.txt" 2>&1
      fi
    done
  done
  note "eval done at $(( $(date +%s) - T0 )) s"; tail -n 4 "$X"/eval/set5_gd_20_*.txt >> "$SUMMARY" 2>/dev/null
fi

# 9. optional (MZSR_GPU_VS_ZSSR=1): the full MZSR-vs-ZSSR report on Set5 g^d_2.0 on the GPU
if [ "${MZSR_GPU_VS_ZSSR:-0}" = "1" ]; then
  mkdir -p "$X/vs_zssr"
  phase vs_zssr "${T_VSZSSR:-300}" $PY benchmarks/quality/report_vs_zssr.py --device cuda --out-dir "$X/vs_zssr" --tag _gpu \
    > "$X/vs_zssr.log" 2>&1
  cat "$X"/vs_zssr/*.md >> "$SUMMARY" 2>/dev/null || tail -20 "$X/vs_zssr.log" >> "$SUMMARY"
fi

note "gpu_check total $(( $(date +%s) - T0 )) s"
