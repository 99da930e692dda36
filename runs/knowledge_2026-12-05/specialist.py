"""Is SR knowledge the bottleneck?  Plain supervised L1 training of the MZSR net for ONE known
degradation (g^d_2.0: isotropic Gaussian var 2.0, direct x2), from the shipped meta-init, on
training-set patches only; Set5 g^d_2.0 scored with no adaptation (psnr_0) every --every steps.
If a specialist passes the shipped MZSR(10) (35.30) quickly, the 8-layer net and our data can
hold the knowledge and the meta-training is what starves it of supervision.

    OMP_NUM_THREADS=1 .venv/bin/python runs/knowledge_2026-12-05/specialist.py --minutes 30
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mzsr_fast import model
from mzsr_fast.degradation import gaussian_kernel
from mzsr_fast.train.common import DEFAULT_DATA, supervised_l1_step
from mzsr_fast.train.data import PatchSampler, TaskSpec, load_folder, make_inputs, sample_task_spec
from mzsr_fast.train.validate import load_valset, validate

ROOT = Path(__file__).resolve().parents[2]
ap = argparse.ArgumentParser()
ap.add_argument("--minutes", type=float, default=30)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--patch", type=int, default=96)
ap.add_argument("--lr", type=float, default=2e-4)
ap.add_argument("--every", type=int, default=200)
ap.add_argument("--amp", choices=["none", "bf16"], default="bf16")
ap.add_argument("--init", default=str(ROOT / "mzsr_fast/weights/mzsr_x2_direct.safetensors"))
ap.add_argument("--out", default=str(Path(__file__).parent / "specialist.jsonl"))
ap.add_argument("--kernels", choices=["g20", "random"], default="g20",
                help="g20: the one test kernel (a specialist); random: the meta-training kernel distribution "
                     "(sample_task_spec), one kernel per group of --group patches (a blind generalist)")
ap.add_argument("--group", type=int, default=4)
ap.add_argument("--save", default=None, help="write the weights here at every evaluation (safetensors)")
ap.add_argument("--eval", default="g20:0", help="Set5 cells and step counts: g20:0,1,10;g02:0,10")
a = ap.parse_args()
torch.set_num_threads(1)
torch.manual_seed(0)
p0, _ = model.load_weights(a.init)
params = {k: v.clone().requires_grad_(True) for k, v in p0.items()}
opt = torch.optim.Adam(params.values(), lr=a.lr)
sampler = PatchSampler(load_folder(DEFAULT_DATA, min_side=a.patch))
spec = TaskSpec(gaussian_kernel(15, 2.0), 2, "direct")
cells = [(c.split(":")[0], tuple(int(n) for n in c.split(":")[1].split(","))) for c in a.eval.split(";")]
vsets = {c: load_valset(ROOT.parent / "shared/data/set5", c, 2) for c, _ in cells}
rng = np.random.default_rng(0)
log = open(a.out, "a")


def score(step, t):
    rec = dict(step=step, time=round(t, 1))
    for c, steps in cells:
        r = validate({k: v.detach() for k, v in params.items()}, vsets[c], steps, device="cpu", backend="cpu")
        rec.update({f"{c}_{k}": round(v, 3) for k, v in r.items() if k.startswith("psnr")})
    rec.update(lr=a.lr, batch=a.batch, patch=a.patch, amp=a.amp, init=Path(a.init).name, kernels=a.kernels)
    print(json.dumps(rec), flush=True)
    if a.save:
        model.save_weights(a.save, {k: v.detach() for k, v in params.items()},
                           dict(scale=2, subsampling="direct", steps=step, note=f"{a.kernels} supervised, {__file__}"))
    log.write(json.dumps(rec) + "\n")
    log.flush()


score(0, 0.0)
t0, step, train_t = time.perf_counter(), 0, 0.0
while train_t < a.minutes * 60:
    ts = time.perf_counter()
    hr = sampler.sample(rng, a.batch, a.patch)
    if a.kernels == "g20":
        x = make_inputs(hr, spec)
    else:
        x = torch.cat([make_inputs(hr[i:i + a.group], sample_task_spec(rng, 2, "direct"))
                       for i in range(0, a.batch, a.group)])
    supervised_l1_step(params, opt, x, hr, bf16=a.amp == "bf16")
    step += 1
    train_t += time.perf_counter() - ts
    if step % a.every == 0:
        score(step, train_t)
score(step, train_t)
