"""Paired sweep of the adaptation schedule on TRAINING images (bsd200 central crops, the three
direct test kernels): MZSR(1) vs the first step's rate, MZSR(10) vs a multiplier of the rest.
Shipped x2 direct weights, cpu backend, 1 thread.  Usage: python sweep.py OUT.json"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path
from PIL import Image
from mzsr_fast import adapt_and_upscale, metrics, degrade, gaussian_kernel
from mzsr_fast.options import default_lr_schedule

KS = {"g20": gaussian_kernel(21, 2.0, 2.0, 0.0), "g02": gaussian_kernel(21, 0.2, 0.2, 0.0),
      "gani": gaussian_kernel(15, 4.0, 1.0, -0.5)}
files = sorted(Path("/work/shared/data/train/bsd200").glob("*.png"))[3::19][:8]
tasks = []
for f in files:
    hr = np.asarray(Image.open(f).convert("RGB")); h, w = hr.shape[:2]; c = 128
    hr = np.ascontiguousarray(hr[h//2-c:h//2+c, w//2-c:w//2+c])
    for name, k in KS.items():
        tasks.append((f.stem, name, hr, degrade(hr, k, 2, "direct"), k))
base = default_lr_schedule(10)
res = {"files": [f.name for f in files], "first": {}, "rest": {}}
def score(sched, steps):
    v = {}
    for stem, name, hr, lr, k in tasks:
        sr = adapt_and_upscale(lr, kernel=k, steps=steps, lr_schedule=sched, backend="cpu", device="cpu")
        v.setdefault(name, []).append(float(metrics.psnr_y(sr, hr, 2)))
    return {n: float(np.mean(x)) for n, x in v.items()} | {"all": float(np.mean(sum(v.values(), [])))}
for a in (0.01, 0.014, 0.017, 0.02, 0.024):
    res["first"][a] = score([a], 1); print("first", a, res["first"][a], flush=True)
    json.dump(res, open(sys.argv[1], "w"), indent=1)
for cm in (0.6, 0.8, 1.0, 1.25, 1.6):
    sched = [base[0]] + [x * cm for x in base[1:]]
    res["rest"][cm] = score(sched, 10); print("rest", cm, res["rest"][cm], flush=True)
    json.dump(res, open(sys.argv[1], "w"), indent=1)
