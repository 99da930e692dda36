#!/usr/bin/env bash
# Compile-check of the CUDA backend on a machine without a GPU (and without CUDA torch):
#   1. every csrc/cuda/*.cu with nvcc for sm_80 and sm_90 (-lineinfo, torch's extension
#      nvcc flags, warnings are errors, register spills / local memory are errors);
#   2. the torch binding csrc/cuda/*.cpp with g++ -fsyntax-only against the headers of
#      the installed torch (the CPU wheel ships the ATen/c10 CUDA headers; the one
#      generated header it lacks, c10/cuda/impl/cuda_cmake_macros.h, is stubbed) and the
#      CUDA toolkit's headers.
# Exit status non-zero on any failure.  Usage: scripts/cuda_check.sh  (make cuda-check)
# Env: PYTHON (default: .venv/bin/python, see scripts/python_env.sh), NVCC (default nvcc),
#      CXX (default g++), CUDA_HOME (default: from nvcc's path),
#      MZSR_FAST_CUDA_ARCHS (default "80;90"), JOBS (parallel nvcc jobs, default 2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NVCC="${NVCC:-nvcc}"
CXX="${CXX:-g++}"
JOBS="${JOBS:-2}"
command -v "$NVCC" >/dev/null || { echo "cuda_check: $NVCC not found" >&2; exit 2; }
source "$ROOT/scripts/python_env.sh"  # PY: $PYTHON, else .venv/bin/python, else python3
require_torch
if [ -z "${CUDA_HOME:-}" ]; then
  CUDA_HOME="$(cd "$(dirname "$(readlink -f "$(command -v "$NVCC")")")/.." && pwd)"
  [ -f "$CUDA_HOME/include/cuda_runtime.h" ] || CUDA_HOME=/usr/local/cuda
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

GENCODE=()
IFS=';' read -ra ARCHS <<< "${MZSR_FAST_CUDA_ARCHS:-80;90}"
for a in "${ARCHS[@]}"; do GENCODE+=("-gencode" "arch=compute_${a},code=sm_${a}"); done

# the flags torch's CUDAExtension adds to every nvcc call (no implicit half/bf16
# conversions...), so that this check compiles the .cu files as setup.py does
TORCH_NVCC_FLAGS=()
if flags="$("$PY" -c 'from torch.utils.cpp_extension import COMMON_NVCC_FLAGS as f; print(" ".join(f))' 2>/dev/null)"; then
  read -ra TORCH_NVCC_FLAGS <<< "$flags"
fi

echo "cuda_check: $("$NVCC" --version | tail -1)"
echo "cuda_check: nvcc ${#ARCHS[@]} arch(s) (${ARCHS[*]}) x $(ls "$ROOT"/csrc/cuda/*.cu | wc -l) file(s)"
fail=0
pids=()
names=()
for f in "$ROOT"/csrc/cuda/*.cu; do
  b="$(basename "$f" .cu)"
  (
    "$NVCC" -std=c++17 -O3 -lineinfo -I"$ROOT/csrc" -DMZSR_FAST_WITH_CUDA "${TORCH_NVCC_FLAGS[@]}" "${GENCODE[@]}" \
      -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror -Xptxas -warn-spills,-warn-lmem-usage \
      -c "$f" -o "$TMP/$b.o" > "$TMP/$b.log" 2>&1
  ) &
  pids+=($!)
  names+=("$b")
  if [ "${#pids[@]}" -ge "$JOBS" ]; then
    if wait "${pids[0]}"; then echo "  ok   ${names[0]}.cu"; else echo "  FAIL ${names[0]}.cu"; cat "$TMP/${names[0]}.log"; fail=1; fi
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then echo "  ok   ${names[$i]}.cu"; else echo "  FAIL ${names[$i]}.cu"; cat "$TMP/${names[$i]}.log"; fail=1; fi
done

echo "cuda_check: g++ -fsyntax-only of the torch binding (csrc/cuda/*.cpp)"
TORCH_INC="$("$PY" -c 'from torch.utils.cpp_extension import include_paths; print("\n".join(include_paths()))')"
PY_INC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
mkdir -p "$TMP/stub/c10/cuda/impl"
if [ ! -f "$(echo "$TORCH_INC" | head -1)/c10/cuda/impl/cuda_cmake_macros.h" ]; then  # CPU wheel
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$TMP/stub/c10/cuda/impl/cuda_cmake_macros.h"
fi
INCS=()
while IFS= read -r d; do INCS+=("-isystem" "$d"); done <<< "$TORCH_INC"
INCS+=("-isystem" "$TMP/stub" "-isystem" "$CUDA_HOME/include" "-isystem" "$PY_INC" "-I$ROOT/csrc")
for f in "$ROOT"/csrc/cuda/*.cpp; do
  if "$CXX" -std=c++17 -fsyntax-only -Wall -Wextra -Werror -DMZSR_FAST_WITH_CUDA "${INCS[@]}" "$f" > "$TMP/cxx.log" 2>&1; then
    echo "  ok   $(basename "$f")"
  else
    echo "  FAIL $(basename "$f")"
    cat "$TMP/cxx.log"
    fail=1
  fi
done
if [ "$fail" -ne 0 ]; then echo "cuda_check: FAILED" >&2; exit 1; fi
echo "cuda_check: all OK"
