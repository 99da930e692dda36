"""Is bf16 autocast good enough for the second-order meta-gradient, and how much faster is it?
The x2_direct campaign recipe's tasks (64^2, 3+3 patches, son split, one image, one inner step at
2e-2), the shipped weights, channels_last as `--channels-last` would; for each of N meta-batches
of 4 tasks: the fp32 and the bf16-autocast meta-gradients, timed alternately, their cosine and
relative norm error.

    OMP_NUM_THREADS=1 .venv/bin/python runs/amp_2026-12-05/amp_check.py
"""
import statistics
import time
from pathlib import Path

import torch

from mzsr_fast import model
from mzsr_fast.train.common import DEFAULT_DATA
from mzsr_fast.train.data import PatchSampler, load_folder, sample_task, step_rng
from mzsr_fast.train.meta import meta_gradients

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
p0, _ = model.load_weights(ROOT / "mzsr_fast/weights/mzsr_x2_direct.safetensors")
sampler = PatchSampler(load_folder(DEFAULT_DATA, min_side=64))
amp = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
times = {"fp32": [], "bf16": []}
for cl in (False, True):
    fmt = (lambda t: t.contiguous(memory_format=torch.channels_last)) if cl else (lambda t: t)
    params = {k: (fmt(v) if v.dim() == 4 else v).clone().requires_grad_(True) for k, v in p0.items()}
    times = {"fp32": [], "bf16": []}
    cos = []
    for it in range(4):
        tasks = [sample_task(sampler, step_rng(99, it, i), patch=64, n_train=3, n_test=3, scale=2,
                             subsampling="direct", inner="son", one_image=True) for i in range(4)]
        for t in tasks:
            for f in ("x_tr", "y_tr", "x_te", "y_te"):
                setattr(t, f, fmt(getattr(t, f)))
        g = {}
        for name, a in (("fp32", None), ("bf16", amp)) if it % 2 == 0 else (("bf16", amp), ("fp32", None)):
            t0 = time.perf_counter()
            g[name], _ = meta_gradients(params, tasks, meta_batch=4, inner_steps=1, alpha=0.02, weights=[1.0], amp=a)
            times[name].append(time.perf_counter() - t0)
        a32 = torch.cat([x.flatten() for x in g["fp32"]])
        a16 = torch.cat([x.flatten() for x in g["bf16"]])
        cos.append(float(torch.nn.functional.cosine_similarity(a32, a16, dim=0)))
        rel = float((a16 - a32).norm() / a32.norm())
        print(f"channels_last={cl} batch {it}: fp32 {times['fp32'][-1]:.2f} s bf16 {times['bf16'][-1]:.2f} s "
              f"cos {cos[-1]:.5f} rel err {rel:.4f}", flush=True)
    m32, m16 = statistics.median(times["fp32"]), statistics.median(times["bf16"])
    print(f"channels_last={cl}: median fp32 {m32:.2f} s, bf16 {m16:.2f} s, ratio {m32 / m16:.2f}x, "
          f"min cos {min(cos):.5f}", flush=True)
