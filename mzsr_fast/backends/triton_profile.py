"""``python -m mzsr_fast.backends.triton_profile``: time the Triton backend's graph-replayed
adaptation + 2x upscale against the reference backend (cuDNN) and print the per-kernel CUDA
time.  Needs a GPU."""
from __future__ import annotations

import torch

from .. import model


def _main(argv=None) -> int:
    """``python -m mzsr_fast.backends.triton_profile [--size 256] [--steps 10] [--precision tf32]``:
    time the graph-replayed adaptation + 2x upscale against the reference backend and print
    the per-kernel CUDA time (torch.profiler; kernel names are the jitted functions')."""
    import argparse
    import time

    ap = argparse.ArgumentParser(description=_main.__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--precision", default="tf32", choices=("fp32", "tf32", "bf16"))
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args(argv)
    from .reference import ReferenceBackend
    from .triton import TritonBackend

    if not torch.cuda.is_available():
        print("needs CUDA")
        return 2
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    s = a.size
    # random (1, 3, s, s) input / target and (1, 3, 2s, 2s) upscale input, seed-0 params; the
    # kernels' work does not depend on the learning rates (device tensors), so one constant lr
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, s, s, generator=g).to(dev)
    t = torch.rand(1, 3, s, s, generator=g).to(dev)
    up = torch.rand(1, 3, 2 * s, 2 * s, generator=g).to(dev)
    p = model.init_params(0, device=dev)
    sched = [1e-2] * a.steps

    def timed(b):
        def once():
            b.prepare(p, x.shape)
            b.adapt(x, t, sched)
            b.upscale(up)
        t0 = time.perf_counter()
        once()  # compile / tune / capture
        torch.cuda.synchronize()
        first = time.perf_counter() - t0
        ts = []
        for _ in range(a.reps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            once()
            torch.cuda.synchronize()
            ts.append(time.perf_counter() - t0)
        ts.sort()
        return first, ts[len(ts) // 2]

    tri = TritonBackend(dev, a.precision)
    ref = ReferenceBackend(dev, "tf32" if a.precision != "fp32" else "fp32")
    f_t, m_t = timed(tri)
    f_r, m_r = timed(ref)
    flops = model.flops_per_pixel() * (3 * s * s * a.steps + 4 * s * s)
    print(f"{s}x{s}, {a.steps} steps + 2x upscale, triton[{a.precision}] {m_t * 1e3:.2f} ms "
          f"(first call {f_t:.1f} s, {flops / m_t / 1e12:.0f} TFLOP/s) vs reference[{ref.precision}, cuDNN] "
          f"{m_r * 1e3:.2f} ms: {m_r / m_t:.2f}x")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        tri.prepare(p, x.shape)
        tri.adapt(x, t, sched)
        tri.upscale(up)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="device_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main())
