"""Adaptation benchmarks: one SGD step and the whole ``adapt_and_upscale`` per provider,
with the plain-PyTorch baselines in the same run.

    pytest benchmarks/bench_adapt.py --benchmark-only [--benchmark-json OUT.json]

Environment:
  MZSR_BENCH_DEVICE   cpu | cuda (default: cuda if available)
  MZSR_BENCH_SIZES    LR sizes for the step benchmark, default "128" on CPU, "128,256,512" on CUDA
  MZSR_BENCH_WHOLE    LR sizes for the whole call, default "128" on CPU, "128,256,512" on CUDA
  MZSR_BENCH_STEPS    step counts for the whole call, default "10" on CPU, "1,10" on CUDA
  MZSR_BENCH_ROUNDS   timed rounds per case (default 3 on CPU, 20 on CUDA)

Providers: reference (NCHW autograd; on CUDA cuDNN with cudnn.benchmark and TF32 on, as
``reference_tf32``), reference_cl (channels_last), module_sgd / module_sgd_cl (nn.Module +
torch.optim.SGD), compile (torch.compile, CUDA only), and every fast backend available
(cpu, triton, cuda, each in its precisions).  ``extra_info`` holds achieved GFLOP/s.
"""
from __future__ import annotations

import os

import pytest
import torch

from mzsr_fast import adapt_and_upscale, backends, default_lr_schedule, gaussian_kernel, model

from .baseline import ModuleSGD

DEV = os.environ.get("MZSR_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
ON_CUDA = DEV.startswith("cuda")
_d = "128,256,512" if ON_CUDA else "128"


def _ints(var, default):
    return [int(s) for s in os.environ.get(var, default).split(",") if s.strip()]


SIZES = _ints("MZSR_BENCH_SIZES", _d)
WHOLE = _ints("MZSR_BENCH_WHOLE", _d)
STEPS = _ints("MZSR_BENCH_STEPS", "1,10" if ON_CUDA else "10")
ROUNDS = int(os.environ.get("MZSR_BENCH_ROUNDS", "10" if ON_CUDA else "3"))
KERNEL = gaussian_kernel(21, 2.0)
PARAMS = model.init_params(0)

if ON_CUDA:
    torch.backends.cudnn.benchmark = True


def _providers():
    """(provider id, kind, backend name, precision)"""
    out = []
    if ON_CUDA:
        out += [("reference_tf32", "backend", "reference", "tf32"), ("module_sgd_tf32", "module", False, "tf32"),
                ("compile_tf32", "compile", False, "tf32")]
    else:
        out += [("reference", "backend", "reference", "fp32"), ("module_sgd", "module", False, "fp32"),
                ("module_sgd_cl", "module", True, "fp32")]
    for name, (ok, _why) in backends.available(DEV).items():
        if name == "reference" or not ok:
            continue
        if name == "triton" and not ON_CUDA:
            continue  # the interpreter is not a benchmark
        cls = backends._load(name)
        for prec in cls.precisions:
            out.append((f"{name}_{prec}", "backend", name, prec))
    return out


PROVIDERS = _providers()


def _sync():
    if ON_CUDA:
        torch.cuda.synchronize()


def _tf32(on: bool):
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def _step_flops(h, w):
    # forward + input grad + weight grad ~ 3 forwards (the first layer has no input grad)
    return 3 * model.flops_per_pixel() * h * w


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("provider,kind,name,prec", PROVIDERS, ids=[p[0] for p in PROVIDERS])
def test_step(benchmark, provider, kind, name, prec, size):
    if ON_CUDA and kind in ("compile", "module") and size != 256:
        pytest.skip("CUDA: torch.compile and nn.Module baselines at 256^2 only (compile time, GPU budget)")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, size, size, generator=g).to(DEV)
    tgt = (x + 0.02 * torch.randn(x.shape, generator=g).to(DEV)).clamp(0, 1)
    _tf32(prec == "tf32")
    if kind == "backend":
        b = backends.get(name, DEV, prec)
        b.prepare(PARAMS, x.shape)
        fn = lambda: b.step(x, tgt, 1e-3)  # noqa: E731
    else:
        m = ModuleSGD(PARAMS, DEV, channels_last=name if kind == "module" else False, compile=kind == "compile")
        m.reset()
        fn = lambda: m.adapt(x, tgt, [1e-3])  # noqa: E731

    def run():
        fn()
        _sync()

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=2)
    t = benchmark.stats.stats.median
    benchmark.extra_info.update(provider=provider, size=size, device=DEV, precision=prec,
                                gflops_per_s=_step_flops(size, size) / t / 1e9)


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("size", WHOLE)
@pytest.mark.parametrize("provider,kind,name,prec", PROVIDERS, ids=[p[0] for p in PROVIDERS])
def test_adapt_and_upscale(benchmark, provider, kind, name, prec, size, steps):
    if ON_CUDA and kind in ("compile", "module") and size != 256:
        pytest.skip("CUDA: torch.compile and nn.Module baselines at 256^2 only (compile time, GPU budget)")
    g = torch.Generator().manual_seed(1)
    lr_img = torch.rand(1, 3, size, size, generator=g).to(DEV)
    _tf32(prec == "tf32")
    if kind == "backend":
        fn = lambda: adapt_and_upscale(lr_img, kernel=KERNEL, steps=steps, weights=PARAMS, backend=name,  # noqa: E731
                                       device=DEV, precision=prec)
    else:
        m = ModuleSGD(PARAMS, DEV, channels_last=name if kind == "module" else False, compile=kind == "compile")
        fn = lambda: m.adapt_and_upscale(lr_img, KERNEL, steps)  # noqa: E731

    def run():
        fn()
        _sync()

    benchmark.pedantic(run, rounds=max(3, ROUNDS // 2), iterations=1, warmup_rounds=2)
    t = benchmark.stats.stats.median
    flops = steps * _step_flops(size, size) + model.flops_per_pixel() * 4 * size * size
    benchmark.extra_info.update(provider=provider, size=size, steps=steps, device=DEV, precision=prec,
                                gflops_per_s=flops / t / 1e9)
