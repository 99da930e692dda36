"""Experiment 5: bias of the raw (uncalibrated) isotropic estimate on TRAINING images
(bsd200, never Set5/Set14): centre 256x256 HR crops of 10 images, 3 isotropic variances
each (log-uniform in [0.2, 5], seeded), direct x2.  Fits log(true) = a log(est) + b."""
import json, math, sys, time
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from PIL import Image
from mzsr_fast.degradation import degrade, gaussian_kernel
from mzsr_fast import kernel_estimate as KE
KE._CALIBRATION = (1.0, 0.0)  # raw estimates
files = sorted(Path('/work/shared/data/train/bsd200').glob('*.png'))[:10]
rng = np.random.default_rng(5)
rows = []
for f in files:
    hr = np.asarray(Image.open(f).convert('RGB'))
    h, w = hr.shape[:2]
    hr = np.ascontiguousarray(hr[h // 2 - 128:h // 2 + 128, w // 2 - 128:w // 2 + 128])
    for _ in range(3):
        var = float(math.exp(rng.uniform(math.log(0.2), math.log(5.0))))
        lr = degrade(hr, gaussian_kernel(15, var), 2, 'direct')
        t = time.time()
        _, info = KE.estimate_kernel(lr, backend='cpu', device='cpu')
        rows.append(dict(image=f.stem, var=var, est=info['var1'], steps=info['steps'], crop=info['crop'], t=time.time() - t))
        print(rows[-1], flush=True)
x = np.log([r['est'] for r in rows]); y = np.log([r['var'] for r in rows])
a, b = np.polyfit(x, y, 1)
res = y - (a * x + b)
out = dict(rows=rows, fit=dict(a=float(a), b=float(b), rms_log_residual=float(np.sqrt(np.mean(res ** 2))),
                               rms_log_raw=float(np.sqrt(np.mean((y - x) ** 2)))))
print(out['fit'])
json.dump(out, open('runs/kernel_estimate_2026-12-04/exp5_calibration.json', 'w'), indent=1)
