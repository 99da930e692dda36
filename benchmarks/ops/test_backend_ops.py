"""The backends' two ops per provider: one adaptation step (``Backend.step``: forward, L1
loss, gradients, SGD update) at LR size ``n``, and the upscale forward (``Backend.upscale``)
of an ``n x n`` image (the whole call runs it once at the HR size).

    pytest benchmarks/ops --benchmark-only

Providers: ``reference_<prec>`` (the baseline) and ``cpu`` / ``triton`` / ``cuda`` in their
precisions (benchmarks/harness.py: PRECISIONS); unavailable ones are skipped with the reason.
``extra_info`` holds the achieved GFLOP/s (``model.flops_per_pixel()``; a step ~ 3 forwards).

Environment: MZSR_BENCH_OPS_SIZES (default "128,256" on CPU, "128,256,512" on CUDA),
MZSR_BENCH_ROUNDS (default 3 on CPU, 20 on CUDA).
"""
from __future__ import annotations

import pytest
import torch

from benchmarks import harness as H

DEV = H.device()
SIZES = H.env_list("MZSR_BENCH_OPS_SIZES", "128,256,512" if H.on_cuda() else "128,256", int)
ROUNDS = H.rounds(cpu=3, cuda=20)
PROVIDERS = H.providers()


def _backend(provider, size):
    from mzsr_fast import backends, model

    name, prec, variant = H.split_provider(provider)
    with H.cuda_variant(variant):
        b = backends.get(name, DEV, prec)
        b.prepare(model.init_params(0, device=DEV), (1, 3, size, size))
    return b, variant


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("op", ["step", "upscale"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_backend_op(benchmark, provider, op, size):
    from mzsr_fast import model

    why = H.provider_skip(provider)
    if why:
        pytest.skip(why)
    if DEV.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    H.set_tf32(provider.endswith("tf32"))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, size, size, generator=g).to(DEV)
    tgt = (x + 0.02 * torch.randn(x.shape, generator=g).to(DEV)).clamp(0, 1)
    b, variant = _backend(provider, size)

    def run():
        with H.cuda_variant(variant):
            out = b.step(x, tgt, 1e-3) if op == "step" else b.upscale(x)
        H.sync()
        return out

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=2)
    flops = (3 if op == "step" else 1) * model.flops_per_pixel() * size * size
    H.record(benchmark, f"ops/{op}", provider, size, flops=flops)
