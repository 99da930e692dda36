"""Peak memory of the test-time refinements per HR output pixel (what plan.REFINE_BYTES holds):
the 8-frame self-ensemble (8 outputs, their stack and sort) and back-projection (degrade of the
HR, imresize), on a 512x512 LR image with a bicubic stand-in for the network, in a fresh process.

    .venv/bin/python benchmarks/mem_refine.py ens|bp       (prints the bytes per HR pixel)
"""
import resource, sys, torch
torch.set_num_threads(1)
from mzsr_fast.refine import self_ensemble, back_project
from mzsr_fast.degradation import imresize, gaussian_kernel
mode = sys.argv[1]
h = w = 512
lr = torch.rand(1, 3, h, w)
k = gaussian_kernel(21, 2.0)
up = imresize(lr, output_shape=(2*h, 2*w)).clamp(0, 1)
pred = lambda f: imresize(f, output_shape=(2*f.shape[-2], 2*f.shape[-1])).clamp(0, 1)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if mode == "ens":
    y = self_ensemble(pred, lr, 2, k, "direct", bp_iters=0, first=up)
elif mode == "bp":
    y = back_project(up, lr, k, 2, "direct", 3)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(mode, "peak-above-start MiB", (peak - base) / 1024, "B per HR px", (peak - base) * 1024 / (4 * h * w))
