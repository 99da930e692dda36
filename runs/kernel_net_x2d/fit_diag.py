"""Fit the diagonal gain of a kernel-net file on held-out *training* crops (every 10th image of
../shared/data/train, never seen in training), (an experiment: not shipped, see README).

The network's own diagonal term is weak; the diagonal is read as the row/column difference of
the estimate on the image turned by 45 degrees (kernel_net.predict), times a gain: the least
squares fit of the true L_xy on the network's own term and that difference (144^2 LR crops).  Prints the kernel error with the net's own
diagonal and with the turned-image one, on the same crops.

    python runs/kernel_net_x2d/fit_diag.py runs/kernel_net_x2d/kernelnet.safetensors
"""
import json
import sys

import math

import numpy as np
import torch
import torch.nn.functional as F

from mzsr_fast import kernel_net as kn
from mzsr_fast.degradation import gaussian_kernel
from mzsr_fast.kernel_estimate import KERNEL_SIZE, kernel_error
from mzsr_fast.train import kernel_net as T
from mzsr_fast.train.data import load_folder

torch.set_num_threads(1)


def rotate45(x: torch.Tensor) -> torch.Tensor:
    """``x: (N, C, h, w)`` turned by 45 degrees (bicubic), cut to the square inscribed in the
    turned image (side ``min(h, w) / sqrt(2)``), so no padding is seen."""
    n, _, h, w = x.shape
    a = math.pi / 4
    th = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype,
                      device=x.device)[None].repeat(n, 1, 1)
    grid = F.affine_grid(th, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bicubic", padding_mode="reflection", align_corners=False)
    side = max(1, int(min(h, w) / math.sqrt(2)) - 2)
    oy, ox = (h - side) // 2, (w - side) // 2
    return y[..., oy:oy + side, ox:ox + side].clamp(0, 1)



net = kn.load(sys.argv[1])
ims = load_folder(T.DEFAULT_DATA)[::10]
x, t = T.make_batch(ims, np.random.default_rng(7), 240, 144, 2, "direct", 0.12, 6.0)
own, diff = [], []
for i in range(len(x)):
    xi = x[i:i + 1]
    own.append(kn._predict(net, xi, True))
    r = kn._predict(net, rotate45(xi), True)
    diff.append(r[0] - r[1])
own, diff, tt = np.array(own), np.array(diff), t.double().numpy()
half = len(x) // 2  # fit on the first half, report on the second
A = np.stack([own[:half, 2], diff[:half]], 1)
mix = [float(v) for v in np.linalg.lstsq(A, tt[:half, 2], rcond=None)[0]]


def kerr(L, T_):
    out = []
    for a, b in zip(L, T_):
        e, g = kn.logcov_to_params(a), kn.logcov_to_params(b)
        out.append(kernel_error(gaussian_kernel(KERNEL_SIZE, e["var1"], e["var2"], e["theta"]),
                                gaussian_kernel(KERNEL_SIZE, g["var1"], g["var2"], g["theta"])))
    return float(np.mean(out))


rot = own.copy()
rot[:, 2] = mix[0] * own[:, 2] + mix[1] * diff
res = dict(mix=mix, n_fit=half, n_test=len(x) - half,
           corr_own=float(np.corrcoef(own[half:, 2], tt[half:, 2])[0, 1]),
           corr_rot45=float(np.corrcoef(rot[half:, 2], tt[half:, 2])[0, 1]),
           kernel_err_own=kerr(own[half:], tt[half:]), kernel_err_rot45=kerr(rot[half:], tt[half:]))
print(json.dumps(res))
# not shipped: on Set5 the mix made the kernel error worse (README), so no file is written
