#!/bin/bash
# Trains the bank entries one after another on one core: queue.sh A|B  (run from the repo root)
set -e
D=runs/bank_2026-12-05
E() { OMP_NUM_THREADS=1 .venv/bin/python $D/entry.py "$@"; }
case $1 in
A) E --region iso:1.5:2.25 --eval g20 --init $D/iso_1.5_2.25.safetensors --lr 5e-5 --minutes 6 --every 100 --seed 1 --save $D/iso_1.5_2.25_d.safetensors > $D/iso_1.5_2.25_d.log 2>&1
   E --region aniso --eval gani --minutes 24 --decay-minutes 6 --save $D/aniso.safetensors > $D/aniso.log 2>&1
   E --region iso:3.375:5 --eval g20 --minutes 16 --decay-minutes 4 --save $D/iso_3.375_5.safetensors > $D/iso_3.375_5.log 2>&1 ;;
B) E --region narrow --eval g02 --init $D/narrow.safetensors --lr 5e-5 --minutes 6 --every 100 --seed 1 --save $D/narrow_d.safetensors > $D/narrow_d.log 2>&1
   E --region iso:1:1.5 --eval g20 --minutes 16 --decay-minutes 4 --save $D/iso_1_1.5.safetensors > $D/iso_1_1.5.log 2>&1
   E --region iso:2.25:3.375 --eval g20 --minutes 16 --decay-minutes 4 --save $D/iso_2.25_3.375.safetensors > $D/iso_2.25_3.375.log 2>&1 ;;
esac
