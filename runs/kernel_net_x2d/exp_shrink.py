"""Does shrinking the predictor's variances help MZSR(10)?  On held-out *training* images
(every 10th of ../shared/data/train: never trained on; centre crops of 192x192 HR), for
g^d_0.2, g^d_2.0, g^d_ani and 3 random kernels each: MZSR(10) Y-PSNR with the true kernel and
with the estimate's covariance scaled by f (L + log f on the diagonal) for f in FACTORS.

    python runs/kernel_net_x2d/exp_shrink.py > runs/kernel_net_x2d/exp_shrink.log
"""
import json
import math

import numpy as np
import torch

from mzsr_fast import adapt_and_upscale, metrics
from mzsr_fast import kernel_net as kn
from mzsr_fast.degradation import degrade, gaussian_kernel
from mzsr_fast.kernel_estimate import KERNEL_SIZE, random_kernel_params
from mzsr_fast.train import kernel_net as T
from mzsr_fast.train.data import load_folder

torch.set_num_threads(1)
FACTORS = (0.7, 0.85, 1.0, 1.15)
net = kn.load(kn.weights_path(2, "direct"))
ims = [im for im in load_folder(T.DEFAULT_DATA)[::10] if min(im.shape[-2:]) >= 192][:12]
kw = dict(backend="cpu", device="cpu", steps=10)
rows = []
for i, im in enumerate(ims):
    h, w = im.shape[-2:]
    hr = im[:, (h - 192) // 2:(h + 192) // 2, (w - 192) // 2:(w + 192) // 2].permute(1, 2, 0).contiguous().numpy()
    ks = [("g02", (0.2, 0.2, 0.0)), ("g20", (2.0, 2.0, 0.0)), ("gani", (4.0, 1.0, -0.5))]
    ks += [(f"r{j}", (p["var1"], p["var2"], p["theta"])) for j, p in enumerate(random_kernel_params(1, seed=100 + i))]
    for name, p in ks:
        k = gaussian_kernel(KERNEL_SIZE, *p)
        lr = degrade(hr, k, 2, "direct")
        x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
        L = kn.predict(net, x, tta=True)
        row = dict(image=i, kernel=name, true=metrics.psnr_y(adapt_and_upscale(lr, kernel=k, **kw), hr, 2))
        for f in FACTORS:
            e = kn.logcov_to_params([L[0] + math.log(f), L[1] + math.log(f), L[2]])
            ek = gaussian_kernel(KERNEL_SIZE, e["var1"], e["var2"], e["theta"])
            row[f"f{f}"] = metrics.psnr_y(adapt_and_upscale(lr, kernel=ek, **kw), hr, 2)
        rows.append(row)
        print(json.dumps({a: round(b, 3) if isinstance(b, float) else b for a, b in row.items()}), flush=True)
for f in FACTORS:
    d = [r[f"f{f}"] - r["true"] for r in rows]
    print(f"factor {f}: est - true mean {np.mean(d):+.3f} dB (n {len(d)})", flush=True)
