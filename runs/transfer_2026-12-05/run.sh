#!/usr/bin/env bash
# One arm of the transfer comparison: the x2_direct one-step recipe in bf16 autocast at beta 1e-4,
# seed 24 (the same tasks in both arms), from INIT; Set5 three-cell validations every 200.
#   runs/transfer_2026-12-05/run.sh NAME INIT SECONDS
set -euo pipefail
cd "$(dirname "$0")/../.."
exec env OMP_NUM_THREADS=1 .venv/bin/mzsr-fast meta-train --out "runs/transfer_2026-12-05/$1" --init "$2" --resume \
  --scale 2 --subsampling direct --patch 64 --n-train 3 --n-test 3 --inner-steps 1 --inner-data son \
  --task-images one --alpha 0.02 --beta 1e-4 --meta-batch 4 --no-multi-step --seed 24 \
  --amp bf16 --channels-last --threads 1 --no-bar --time-budget "$3" \
  --best-metric psnr_1+psnr_10 --val-backend cpu --val-steps 1,10 --val-every 200 \
  --val-suite set5:g02,set5:g20,set5:gani --ckpt-every 100 --plot-every 100
