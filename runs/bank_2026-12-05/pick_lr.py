"""The adaptation schedule of a bank entry, chosen on TRAINING images (not Set5/Set14): 6 images
of shared/data/train (centre 192^2 crops), each degraded with one kernel drawn from the entry's
region (entry.sample_region, fixed seed); MZSR(1) and MZSR(10) with the official schedule
(2e-2, 1e-2 x3, 5e-3) scaled by each factor; the best psnr_1 + psnr_10 wins.

    OMP_NUM_THREADS=1 .venv/bin/python runs/bank_2026-12-05/pick_lr.py ENTRY.safetensors REGION
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from entry import sample_region  # noqa: E402

from mzsr_fast import adapt_and_upscale, default_lr_schedule, metrics, model  # noqa: E402
from mzsr_fast.degradation import degrade  # noqa: E402
from mzsr_fast.train.common import DEFAULT_DATA  # noqa: E402

torch.set_num_threads(1)
path, region = sys.argv[1], sys.argv[2]
factors = [float(f) for f in (sys.argv[3].split(",") if len(sys.argv) > 3 else "1,0.5,0.25,0.1".split(","))]
params, _ = model.load_weights(path)
files = sorted(p for p in Path(DEFAULT_DATA).rglob("*.png"))
rng = np.random.default_rng(123)
picks = [files[i] for i in rng.choice(len(files), 6, replace=False)]
from PIL import Image  # noqa: E402
items = []
for f in picks:
    hr = np.asarray(Image.open(f).convert("RGB"))
    h, w = hr.shape[:2]
    c = 192
    y0, x0 = max(0, (h - c) // 2), max(0, (w - c) // 2)
    hr = hr[y0:y0 + c, x0:x0 + c]
    hr = hr[: hr.shape[0] // 2 * 2, : hr.shape[1] // 2 * 2]
    spec = sample_region(rng, region)
    items.append((f.name, spec.kernel, degrade(hr, spec.kernel, 2, "direct"), hr))
out = {}
for fac in factors:
    rec = {}
    for n in (1, 10):
        sched = [fac * v for v in default_lr_schedule(n)]
        rec[f"psnr_{n}"] = round(float(np.mean([
            metrics.psnr_y(adapt_and_upscale(lr, kernel=k, steps=n, weights=params, backend="cpu", device="cpu",
                                             lr_schedule=sched), hr, 2) for _, k, lr, hr in items])), 3)
    out[fac] = rec
    print(json.dumps({"file": Path(path).name, "region": region, "factor": fac, **rec}), flush=True)
best = max(out, key=lambda f: out[f]["psnr_1"] + out[f]["psnr_10"])
print(json.dumps({"file": Path(path).name, "region": region, "best_factor": best,
                  "lr_schedule": [best * v for v in default_lr_schedule(10)][:5]}), flush=True)
