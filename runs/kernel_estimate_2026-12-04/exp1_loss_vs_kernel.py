"""Experiment 1: is the adaptation loss (son -> LR) a kernel criterion?
For Set5 images degraded with a known isotropic kernel, for a ladder of candidate
isotropic variances: the training-pair loss after 10 steps (whole image), a cycle loss
(degrade(SR, k) vs LR) and the true PSNR of MZSR(10) with the candidate."""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from mzsr_fast import adapt_and_upscale, metrics
from mzsr_fast.degradation import gaussian_kernel, degrade
from mzsr_fast.train.validate import load_valset
setting = sys.argv[1]
limit = int(sys.argv[2]) if len(sys.argv) > 2 else None
vs = load_valset('/work/shared/data/set5', setting, limit=limit)
cands = [0.2, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0]
out = {}
for name, lr, hr in vs.items:
    rows = []
    for v in cands:
        k = gaussian_kernel(21, v)
        sr, info = adapt_and_upscale(lr, kernel=k, steps=10, backend='cpu', device='cpu', return_info=True, lr_schedule=None)
        # loss after the last step: one more zero-lr step
        sr2, info2 = adapt_and_upscale(lr, kernel=k, steps=11, backend='cpu', device='cpu', return_info=True,
                                       lr_schedule=[2e-2, 1e-2, 1e-2, 1e-2] + [5e-3] * 6 + [0.0])
        cyc = np.abs(degrade(sr, k, 2, 'direct').astype(np.float64) - lr.astype(np.float64)).mean() / 255
        rows.append(dict(var=v, psnr=metrics.psnr_y(sr, hr, 2), loss0=info['losses'][0], loss_end=info2['losses'][-1], cycle=cyc))
        print(name, rows[-1], flush=True)
    out[name] = rows
json.dump(out, open(f'runs/kernel_estimate_2026-12-04/exp1_{setting}.json', 'w'), indent=1)
