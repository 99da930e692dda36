#!/usr/bin/env bash
# Budgeted GPU training of the shipped weights (see mzsr_fast/train/gpu.py for the recipe).
#
#   scripts/gpu_train.sh OUTDIR [--time-budget 200] [--data .device_carry/train] [recipe flags...]
#
# Starts from mzsr_fast/weights/pretrain_x2_bicubic.safetensors; continued x2 bicubic
# pretraining, then x2 direct meta-training (first order, then second order), then, in the
# same budget, x2 bicubic and x4 direct.  Writes into OUTDIR:
#   pretrain_x2_bicubic.safetensors mzsr_x2_direct.safetensors mzsr_x2_bicubic.safetensors
#   pretrain_x4_bicubic.safetensors mzsr_x4_direct.safetensors   (those whose stage ran)
#   <stage>/log.jsonl <stage>/ckpt.pt <stage>/last.safetensors   summary.json  recipe.log
# Needs only the repo: torch, numpy, pillow, scipy, safetensors; no network, no build
# (the reference PyTorch path is used).  Validation on Set5 if $MZSR_FAST_DATA/set5,
# ../shared/data/set5 or .device_carry/set5 exists (else pass --val-data '').
# CPU dry run:  scripts/gpu_train.sh /tmp/gt --device cpu --time-budget 20 --pre-batch 4 \
#                 --pre-patch 32 --meta-batch 2 --meta-patch 32 --inner-steps 2 --val-data ''
set -euo pipefail
OUT=${1:?usage: scripts/gpu_train.sh OUTDIR [--time-budget S] [--data DIR] [flags]}
shift
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
source scripts/python_env.sh  # PY: $PYTHON, else .venv/bin/python, else python3 (GPU machines)
require_torch
"$PY" -m mzsr_fast.train.gpu recipe --out "$OUT" "$@" 2>&1 | tee "$OUT/recipe.log"
exit "${PIPESTATUS[0]}"
