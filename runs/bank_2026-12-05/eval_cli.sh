#!/bin/bash
# mzsr-fast eval of one weights choice on Set5/Set14 x the three direct settings (+ the CLI's
# seeded random anisotropic kernels), cpu backend, 1 thread; JSON under runs/bank_2026-12-05/eval/.
#   eval_cli.sh TAG [--weights FILE]      (no --weights: the shipped default)
set -e
TAG=$1; shift
D=runs/bank_2026-12-05/eval; mkdir -p $D
for set in set5 set14; do
  for s in g^d_2.0 g^d_0.2 g^d_ani random; do
    n=$(echo $s | tr -d '^.')
    OMP_NUM_THREADS=1 .venv/bin/mzsr-fast eval --hr-dir ../shared/data/$set --setting $s --steps 1,10 \
      --backend cpu --device cpu --json $D/${set}_${n}_$TAG.json "$@" | tail -n 3
  done
done
