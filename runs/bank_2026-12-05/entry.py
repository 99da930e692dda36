"""One entry of a kernel-conditioned init bank: plain supervised L1 training of the MZSR net on
training-set patches (shared/data/train only) degraded with kernels drawn from ONE region of the
meta-training kernel distribution (a "region specialist": blind inside its region).

Regions are fixed from the training distribution (train.data.sample_task_spec), not from the
test kernels: ``narrow`` (var1 in [0.1, 1]), ``iso:LO:HI`` (isotropic, var log-uniform in
[LO, HI]) and ``aniso`` (the SPEC anisotropic family with var1/var2 >= 1.3).

    OMP_NUM_THREADS=1 .venv/bin/python runs/bank_2026-12-05/entry.py --region iso:1.5:2.25 \
        --minutes 30 --save runs/bank_2026-12-05/iso_1.5_2.25.safetensors
"""
import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from mzsr_fast import model
from mzsr_fast.degradation import gaussian_kernel
from mzsr_fast.train.common import DEFAULT_DATA, supervised_l1_step
from mzsr_fast.train.data import PatchSampler, TaskSpec, load_folder, make_inputs
from mzsr_fast.train.validate import load_valset, validate

ROOT = Path(__file__).resolve().parents[2]
ANISO_MIN_RATIO = 1.3


def sample_region(rng: np.random.Generator, region: str) -> TaskSpec:
    theta = float(rng.uniform(0.0, math.pi))
    if region == "narrow":
        v1 = float(rng.uniform(0.1, 1.0))
        v2 = float(rng.uniform(0.1, v1))
    elif region.startswith("iso:"):
        lo, hi = (float(x) for x in region.split(":")[1:])
        v = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        r = float(rng.uniform(1.0, ANISO_MIN_RATIO))  # the iso entries also take near-isotropic kernels
        v1, v2 = v * math.sqrt(r), v / math.sqrt(r)
    elif region == "aniso":
        while True:
            v1 = float(rng.uniform(1.0, 5.0))
            v2 = float(rng.uniform(1.0, v1))
            if v1 / v2 >= ANISO_MIN_RATIO:
                break
    else:
        raise ValueError(region)
    return TaskSpec(gaussian_kernel(15, v1, v2, theta), 2, "direct", 0.0, region)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--region", required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--group", type=int, default=4, help="patches per kernel")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--decay-minutes", type=float, default=0.0,
                    help="the last D minutes of --minutes run at lr/4 (the constant-lr iterates are noisy)")
    ap.add_argument("--every", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=str(ROOT / "runs/knowledge_2026-12-05/generalist.safetensors"))
    ap.add_argument("--save", required=True)
    ap.add_argument("--eval", default="g20", help="Set5 cells scored with no adaptation, e.g. g20,g02")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    p0, _ = model.load_weights(a.init)
    params = {k: v.clone().requires_grad_(True) for k, v in p0.items()}
    opt = torch.optim.Adam(params.values(), lr=a.lr)
    sampler = PatchSampler(load_folder(DEFAULT_DATA, min_side=a.patch))
    cells = a.eval.split(",")
    vsets = {c: load_valset(ROOT.parent / "shared/data/set5", c, 2) for c in cells}
    rng = np.random.default_rng(a.seed)
    out = Path(a.save).with_suffix(".jsonl")
    log = open(out, "a")

    def score(step, t):
        rec = dict(step=step, time=round(t, 1), region=a.region)
        for c in cells:
            r = validate({k: v.detach() for k, v in params.items()}, vsets[c], (0,), device="cpu", backend="cpu")
            rec[f"set5_{c}_psnr_0"] = round(r["psnr_0"], 3)
        rec.update(lr=opt.param_groups[0]["lr"], batch=a.batch, patch=a.patch, init=Path(a.init).name)
        print(json.dumps(rec), flush=True)
        model.save_weights(a.save, {k: v.detach() for k, v in params.items()},
                           dict(scale=2, subsampling="direct", steps=step,
                                note=f"bank entry {a.region}: supervised L1 from {Path(a.init).name}"))
        log.write(json.dumps(rec) + "\n")
        log.flush()

    score(0, 0.0)
    step, train_t = 0, 0.0
    while train_t < a.minutes * 60:
        ts = time.perf_counter()
        if a.decay_minutes and train_t >= (a.minutes - a.decay_minutes) * 60:
            for g in opt.param_groups:
                g["lr"] = a.lr / 4
        hr = sampler.sample(rng, a.batch, a.patch)
        x = torch.cat([make_inputs(hr[i:i + a.group], sample_region(rng, a.region))
                       for i in range(0, a.batch, a.group)])
        supervised_l1_step(params, opt, x, hr)
        step += 1
        train_t += time.perf_counter() - ts
        if step % a.every == 0:
            score(step, train_t)
    score(step, train_t)
