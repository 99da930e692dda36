"""Kernel accuracy of a kernel-net file (no SR): per setting, the mean kernel error and the
mean |log var| error of the estimate, on the images of a folder.  Used for the numbers in
this folder's README; the PSNR evaluation is `python -m mzsr_fast.kernel_eval`.

    python runs/kernel_net_x2d/accuracy.py runs/kernel_net_x2d/kernelnet.safetensors ../shared/data/set5 [--tta] [-q]
"""
import json
import sys

import numpy as np
import torch

from mzsr_fast import kernel_net as kn
from mzsr_fast.degradation import degrade, gaussian_kernel
from mzsr_fast.kernel_estimate import KERNEL_SIZE, kernel_error
from mzsr_fast.kernel_eval import cases, load_hr

torch.set_num_threads(1)
net = kn.load(sys.argv[1])
images = load_hr(sys.argv[2])
out = {}
for st in ("g^d_0.2", "g^d_2.0", "g^d_ani", "random"):
    errs, lv = [], []
    for name, hr, k, sub, p in cases(images, st):
        lr = torch.from_numpy(degrade(hr, k, 2, sub)).permute(2, 0, 1)[None].float() / 255
        e = kn.logcov_to_params(kn.predict(net, lr, tta='--tta' in sys.argv))
        ek = gaussian_kernel(KERNEL_SIZE, e["var1"], e["var2"], e["theta"])
        errs.append(kernel_error(ek, k))
        t = kn.params_to_logcov(**p) if p else {"g^d_0.2": kn.params_to_logcov(0.2, 0.2, 0),
                                                "g^d_2.0": kn.params_to_logcov(2, 2, 0),
                                                "g^d_ani": kn.params_to_logcov(4, 1, -0.5)}[st]
        L = kn.params_to_logcov(**e)
        lv.append(float(np.abs(L[:2] - t[:2]).mean()))
        if st != "random" and "-q" not in sys.argv:
            print(st, name, {a: round(b, 2) for a, b in e.items()}, "kerr", round(errs[-1], 3), flush=True)
    out[st] = dict(kernel_err=round(float(np.mean(errs)), 3), logvar_mae=round(float(np.mean(lv)), 3), n=len(errs))
    print(st, out[st], flush=True)
print(json.dumps(out))
