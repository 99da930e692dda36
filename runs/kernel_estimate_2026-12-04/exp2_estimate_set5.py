import time, sys, numpy as np, torch
torch.set_num_threads(1)
from mzsr_fast.train.validate import load_valset
from mzsr_fast.kernel_estimate import estimate_kernel, kernel_error
vs = load_valset('/work/shared/data/set5', sys.argv[1], limit=int(sys.argv[2]))
for name, lr, hr in vs.items:
    k, info = estimate_kernel(lr, backend='cpu', device='cpu', budget=float(sys.argv[3]), steps=int(sys.argv[4]))
    print(name, {a: (round(b, 3) if isinstance(b, float) else b) for a, b in info.items() if a not in ('candidates', 'weights')}, 'err', round(kernel_error(k, vs.kernel), 3))
    for c in sorted(info['candidates'], key=lambda c: c['cycle'])[:6]:
        print('   ', {a: round(b, 5) for a, b in c.items()})
