"""One small adaptation through the cuda backend (eager ops, no CUDA graphs) for
compute-sanitizer, e.g.::

    compute-sanitizer --tool memcheck  --error-exitcode 1 python3 scripts/cuda_sanitize.py
    compute-sanitizer --tool racecheck --error-exitcode 1 python3 scripts/cuda_sanitize.py --precisions tf32,bf16

Runs every precision (the fp32 SIMT kernels, and the TF32 / bf16 tensor-core kernels on
the 64-channel layers) on a (1, 3, 37, 29) input -- sizes that are not multiples of any
tile -- for 2 steps plus one forward at 2x, and exits non-zero if the losses or the
weights disagree with ReferenceBackend on the CPU (fp32; kept off the GPU so that the
sanitizer only sees this backend's kernels) beyond the precision's tolerance.
"""
from __future__ import annotations

import argparse
import sys

import torch

from mzsr_fast import backends, model
from mzsr_fast.backends.reference import ReferenceBackend

TOL = {"fp32": 2e-4, "tf32": 2e-2, "bf16": 6e-2}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) / max(float(b.abs().max()), 1e-12)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--precisions", default="fp32,tf32,bf16")
    ap.add_argument("--size", default="37x29", help="HxW of the adaptation input")
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("cuda_sanitize: no CUDA device", file=sys.stderr)
        return 2
    ok, why = backends.available("cuda")["cuda"]
    if not ok:
        print(f"cuda_sanitize: cuda backend unavailable: {why}", file=sys.stderr)
        return 2
    h, w = (int(v) for v in args.size.split("x"))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, h, w, generator=g).cuda()
    tgt = (x.cpu() + 0.05 * torch.randn(1, 3, h, w, generator=g)).clamp(0, 1).cuda()
    up = torch.rand(1, 3, 2 * h, 2 * w, generator=g).cuda()
    params = model.init_params(0)
    sched = [0.02, 0.01, 0.01, 0.005][: args.steps] + [0.005] * max(0, args.steps - 4)
    ref = ReferenceBackend("cpu", "fp32")
    ref.prepare(params, x.shape)
    rlosses = ref.adapt(x.cpu(), tgt.cpu(), sched)
    rparams = ref.params()
    rsr = ref.upscale(up.cpu())
    failed = False
    for prec in args.precisions.split(","):
        b = backends.get("cuda", "cuda", prec, use_graphs=False)
        b.prepare(params, x.shape)
        losses = b.adapt(x, tgt, sched)
        sr = b.upscale(up)
        torch.cuda.synchronize()
        mine = {k: v.cpu() for k, v in b.params().items()}
        errs = {"losses": rel(losses.cpu(), rlosses), "upscale": rel(sr.cpu(), rsr)}
        # weights: error / (max |reference update| + 4 float32 ulps of max |w|), / 10
        def upd_err(k):
            scale = float((rparams[k] - params[k]).abs().max()) + 4 * 2.0**-24 * float(params[k].abs().max())
            return float((mine[k] - rparams[k]).abs().max()) / scale

        errs["updates"] = max(upd_err(k) for k in rparams) / 10
        bad = {k: v for k, v in errs.items() if not v <= TOL[prec]}
        print(f"cuda_sanitize {prec}: " + ", ".join(f"{k} rel err {v:.3g}" for k, v in errs.items())
              + f" (tol {TOL[prec]}) -> {'FAIL' if bad else 'ok'}")
        failed |= bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
