import time, sys, numpy as np, torch, math
torch.set_num_threads(1)
from mzsr_fast.train.validate import load_valset
from mzsr_fast import adapt_and_upscale, metrics, options as O
from mzsr_fast.kernel_estimate import _Scorer, _crop_boxes
from mzsr_fast.degradation import gaussian_kernel
from mzsr_fast.io import to_internal
vs = load_valset('/work/shared/data/set5', 'gani', limit=2)
params, wd = O.load_params(None, 2, 'direct')
be = O.backend_instance('cpu', torch.device('cpu'), 'fp32')
for name, lr, hr in vs.items:
    x = to_internal(lr, 'cpu')[0][0]
    for steps in (3, 10):
        sched = O.schedule(None, steps, O.recommended_schedule(wd))
        sc = _Scorer(be, params, x, 2, 'direct', sched, [(0, 0)], 10**6)
        for p in [(2, 2, 0), (4, 1, -0.5), (4, 1, 0.5), (3, 1.33, -0.5), (4, 1, 1.07), (4, 1, -2.07)]:
            print(name, steps, p, round(sc(*p) * 1e3, 4), flush=True)
    for p in [(2, 2, 0), (4, 1, -0.5), (4, 1, 0.5)]:
        sr = adapt_and_upscale(lr, kernel=gaussian_kernel(15, *p), steps=10, backend='cpu', device='cpu')
        print(name, 'psnr', p, metrics.psnr_y(sr, hr, 2), flush=True)
