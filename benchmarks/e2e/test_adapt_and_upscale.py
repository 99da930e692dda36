"""The whole call: ``adapt_and_upscale(steps=k)`` (son, adaptation, 2x upscale) per provider
and size, the baselines in the same run, rounds interleaved.

    pytest benchmarks/e2e --benchmark-only          (rows -> benchmarks/results/<machine>.csv)

Providers: ``reference_<prec>`` (the plain-PyTorch reference backend, the baseline the
speed-ups are quoted against; on CUDA cuDNN with ``cudnn.benchmark``), ``module_sgd_<prec>``
(``nn.Module`` + ``torch.optim.SGD``, what a user would write, benchmarks/baseline.py), and
the fast backends ``cpu``, ``triton``, ``cuda`` in their precisions; a provider that cannot
run here is skipped with the reason.  Rounds are interleaved: the tests run round 0 of every
size and provider, then round 1, ... (round 0 also does the untimed warm-up: weights,
autotuning, graph capture), so that every provider sees the same load; the results table
gets the median / min / max over all rounds of each (provider, size).

Sizes: an int ``n`` is a random ``n x n`` LR image with a 21x21 Gaussian kernel (var 2.0);
a Set5 name (``baby``) is its official g^d_2.0 LR image (256x256 for baby) and kernel.

Environment:
  MZSR_BENCH_E2E_SIZES  default "128,baby" on CPU, "128,256,512,baby" on CUDA
  MZSR_BENCH_STEPS      adaptation steps, default "10"
  MZSR_BENCH_ROUNDS     interleaved rounds (default 3 on CPU, 7 on CUDA)
  MZSR_BENCH_CALLS      timed calls per round (default 1 on CPU, 10 on CUDA)
  MZSR_BENCH_WEIGHTS    a safetensors file (default: the shipped x2 direct weights)
"""
from __future__ import annotations

import os

import pytest
import torch

from benchmarks import harness as H
from benchmarks.baseline import ModuleSGD

DEV = H.device()
SIZES = H.env_list("MZSR_BENCH_E2E_SIZES", "128,256,512,baby" if H.on_cuda() else "128,baby")
STEPS = H.env_list("MZSR_BENCH_STEPS", "10", int)
ROUNDS = H.rounds(cpu=3, cuda=7)
CALLS = int(os.environ.get("MZSR_BENCH_CALLS", "10" if H.on_cuda() else "1"))
_BASE_PREC = "tf32" if H.on_cuda() else "fp32"
PROVIDERS = [f"reference_{_BASE_PREC}", f"module_sgd_{_BASE_PREC}"] + [
    p for p in H.providers() if p != f"reference_{_BASE_PREC}"]
#: (round, size, steps, provider), round-major: the interleaving
CASES = [(r, s, k, p) for r in range(ROUNDS) for s in SIZES for k in STEPS for p in PROVIDERS]
BENCH = "e2e/adapt_and_upscale_steps{}"


def _case(size: str):
    """-> (LR (1, 3, h, w) float32 on DEV, kernel (k, k) float64)."""
    import numpy as np

    from mzsr_fast import gaussian_kernel

    if size.isdigit():
        g = torch.Generator().manual_seed(1)
        return torch.rand(1, 3, int(size), int(size), generator=g).to(DEV), gaussian_kernel(21, 2.0)
    k, imgs = H.set5_g20()
    if f"{size}.png" not in imgs:
        raise ValueError(f"MZSR_BENCH_E2E_SIZES: {size!r} is neither an int nor a Set5 image ({sorted(imgs)})")
    lr = imgs[f"{size}.png"][0]
    return torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].float().div(255).to(DEV), k


_CACHE: dict = {}


def _params():
    if "params" not in _CACHE:
        from mzsr_fast import gaussian_kernel, options

        # the shipped default is a bank: the start its g^d_2.0-like kernels get (the speed
        # does not depend on which start)
        params, _ = options.load_params(os.environ.get("MZSR_BENCH_WEIGHTS"), 2, "direct",
                                        kernel=gaussian_kernel(21, 2.0))
        _CACHE["params"] = {k: v.to(DEV) for k, v in params.items()}
    return _CACHE["params"]


def _input(size):
    if size not in _CACHE:
        _CACHE[size] = _case(size)
    return _CACHE[size]


def call_fn(provider: str, size: str, steps: int):
    """The timed call of ``provider`` (synchronised): a zero-argument function."""
    from mzsr_fast import adapt_and_upscale

    x, k = _input(size)
    params = _params()
    if provider.startswith("module_sgd_"):
        key = ("module", provider, size)
        if key not in _CACHE:
            _CACHE[key] = ModuleSGD(params, DEV)
        m = _CACHE[key]

        def run():
            out = m.adapt_and_upscale(x, k, steps)
            H.sync()
            return out
        return run
    name, prec, variant = H.split_provider(provider)

    def run():
        with H.cuda_variant(variant):
            out = adapt_and_upscale(x, kernel=k, steps=steps, weights=params, backend=name, device=DEV,
                                    precision=prec)
        H.sync()
        return out
    return run


@pytest.mark.parametrize("rnd,size,steps,provider", CASES, ids=[f"r{r}-{s}-steps{k}-{p}" for r, s, k, p in CASES])
def test_adapt_and_upscale(benchmark, rnd, size, steps, provider):
    if not provider.startswith("module_sgd_"):
        why = H.provider_skip(provider)
        if why:
            pytest.skip(why)
    if DEV.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    H.set_tf32(provider.split("_")[-1].startswith("tf32"))
    run = call_fn(provider, size, steps)
    benchmark.pedantic(run, rounds=CALLS, iterations=1, warmup_rounds=(2 if H.on_cuda() else 1) if rnd == 0 else 0)
    H.record(benchmark, BENCH.format(steps), provider, size, round=rnd, device=DEV)
