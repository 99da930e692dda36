"""CPU benchmarks of the native ``cpu`` backend against the plain-PyTorch baselines, all in
the same run (compare ratios: the machine may be shared).

    pytest benchmarks/bench_cpu.py --benchmark-only [--benchmark-json OUT.json]

Providers (``provider``):
  reference                 ReferenceBackend, NCHW autograd (oneDNN)
  reference_channels_last   the same with channels_last tensors
  module_sgd / module_sgd_cl  a plain ``nn.Module`` (MZSRNet) + ``torch.optim.SGD`` loop, NCHW / channels_last
  cpu / cpu_bf16            the compiled backend, fp32 and the bf16 fast mode (AVX512_BF16 CPUs)

Cases:
  test_step                 one adaptation step at S x S (default 128, 256; 512 with MZSR_BENCH_CPU_LARGE=1)
  test_whole_baby           ``adapt_and_upscale(steps=10)`` on Set5 ``baby`` (the official g^d_2.0 LR,
                            256^2 -> 512^2), with MZSR_BENCH_CPU_WHOLE=1 (about 1-2 min per provider
                            on a 2-core machine); extra_info holds the Y-PSNR against the HR image
                            and the peak RSS of the call measured in a fresh subprocess.

Environment: MZSR_BENCH_ROUNDS (default 3), MZSR_BENCH_WEIGHTS (a safetensors file; default
``model.init_params(0)`` since the package may ship no weights), MZSR_FAST_DATA (data dir).

``extra_info``: achieved GFLOP/s (``model.flops_per_pixel()``, a step ~ 3 forwards), the
machine's sgemm GFLOP/s (a 2048^3 ``torch.mm`` timed in the same run), the ratio.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mzsr_fast import adapt_and_upscale, backends, model
from mzsr_fast.benchutil import sgemm_gflops

from .baseline import ModuleSGD

ROUNDS = int(os.environ.get("MZSR_BENCH_ROUNDS", "3"))
LARGE = os.environ.get("MZSR_BENCH_CPU_LARGE") == "1"
WHOLE = os.environ.get("MZSR_BENCH_CPU_WHOLE") == "1"
SIZES = [128, 256] + ([512] if LARGE else [])
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.normpath(os.environ.get("MZSR_FAST_DATA", os.path.join(ROOT, "..", "shared", "data")))
WEIGHTS = os.environ.get("MZSR_BENCH_WEIGHTS")


def _params():
    if WEIGHTS:
        return model.load_weights(WEIGHTS, verify=False)[0]
    return model.init_params(0)


PARAMS = _params()


def _providers():
    out = [
        ("reference", "backend", "reference", "fp32", False),
        ("reference_channels_last", "backend", "reference", "fp32", True),
        ("module_sgd", "module", None, "fp32", False),
        ("module_sgd_cl", "module", None, "fp32", True),
    ]
    ok, _ = backends.available("cpu")["cpu"]
    if ok:
        out.append(("cpu", "backend", "cpu", "fp32", False))
        if torch.ops.mzsr_fast.cpu_has_bf16():
            out.append(("cpu_bf16", "backend", "cpu", "bf16", False))
    return out


PROVIDERS = _providers()
IDS = [p[0] for p in PROVIDERS]


@pytest.fixture(scope="session")
def sgemm():
    return sgemm_gflops(2048, "cpu", repeat=3)


def _backend(name, prec, cl):
    kw = {"channels_last": True} if cl else {}
    return backends.get(name, "cpu", prec, **kw)


def _step_flops(h, w):
    return 3 * model.flops_per_pixel() * h * w


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("provider,kind,name,prec,cl", PROVIDERS, ids=IDS)
def test_step(benchmark, sgemm, provider, kind, name, prec, cl, size):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, size, size, generator=g)
    tgt = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    if kind == "backend":
        b = _backend(name, prec, cl)
        b.prepare(PARAMS, x.shape)
        fn = lambda: b.step(x, tgt, 1e-3)  # noqa: E731
    else:
        m = ModuleSGD(PARAMS, "cpu", channels_last=cl)
        m.reset()
        fn = lambda: m.adapt(x, tgt, [1e-3])  # noqa: E731
    benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    t = benchmark.stats.stats.median
    gf = _step_flops(size, size) / t / 1e9
    benchmark.extra_info.update(provider=provider, size=size, precision=prec, gflops_per_s=gf,
                                sgemm_gflops_per_s=sgemm, fraction_of_sgemm=gf / sgemm,
                                threads=torch.get_num_threads())


# ---------------------------------------------------------------------------- whole call
def _baby():
    from mzsr_fast.io import load_image

    lr = np.asarray(load_image(os.path.join(DATA, "set5_g20", "baby.png")))
    hr = np.asarray(load_image(os.path.join(DATA, "set5", "baby.png")))
    return lr, hr, os.path.join(DATA, "set5_g20", "kernel.mat")


def _to_nchw(a):
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255.0


def _run_whole(provider, kind, name, prec, cl, lr, kernel):
    """-> SR as uint8 HWC numpy."""
    if kind == "backend":
        if cl:
            # adapt_and_upscale builds backends by name; the channels_last reference goes
            # through the same steps by hand (degrade, resize, adapt, upscale)
            from mzsr_fast import default_lr_schedule, degrade, imresize
            from mzsr_fast.io import load_kernel

            x = _to_nchw(lr)
            k = load_kernel(kernel)
            h, w = x.shape[-2:]
            son_up = imresize(degrade(x, k, 2, "direct"), output_shape=(h, w))
            lr_up = imresize(x, output_shape=(2 * h, 2 * w))
            b = _backend(name, prec, cl)
            b.prepare(PARAMS, son_up.shape)
            b.adapt(son_up, x, default_lr_schedule(10))
            sr = b.upscale(lr_up).clamp(0, 1)
        else:
            return adapt_and_upscale(lr, scale=2, kernel=kernel, steps=10, weights=PARAMS, backend=name,
                                     device="cpu", precision=prec)
    else:
        from mzsr_fast.io import load_kernel

        m = ModuleSGD(PARAMS, "cpu", channels_last=cl)
        sr = m.adapt_and_upscale(_to_nchw(lr), load_kernel(kernel), 10)
    return (sr[0].permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)


# ru_maxrss survives fork/exec (it would report the parent's peak): read VmHWM of the
# fresh process instead, after resetting it to the current RSS (clear_refs 5).
_PEAK_SCRIPT = r"""
import json, sys
sys.path.insert(0, {root!r})
import numpy as np, torch
from benchmarks import bench_cpu as B
def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
p = [q for q in B.PROVIDERS if q[0] == {provider!r}][0]
lr, hr, k = B._baby()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = vm("VmRSS:")
B._run_whole(*p, lr, k)
print(json.dumps({{"base_kib": base, "peak_kib": vm("VmHWM:")}}))
"""


def peak_rss_mib(provider: str) -> dict:
    """Peak RSS of one (first) whole call in a fresh process: (peak, peak above the
    process's RSS just before the call) in MiB (Linux /proc)."""
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT.format(root=ROOT, provider=provider)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    d = json.loads(out.stdout.strip().splitlines()[-1])
    return {"peak_rss_mib": d["peak_kib"] / 1024, "peak_rss_above_start_mib": (d["peak_kib"] - d["base_kib"]) / 1024}


@pytest.mark.skipif(not WHOLE, reason="set MZSR_BENCH_CPU_WHOLE=1 (whole adapt_and_upscale on Set5 baby)")
@pytest.mark.parametrize("provider,kind,name,prec,cl", PROVIDERS, ids=IDS)
def test_whole_baby(benchmark, sgemm, provider, kind, name, prec, cl):
    from mzsr_fast.metrics import psnr_y

    lr, hr, kernel = _baby()
    res = {}

    def run():
        res["sr"] = _run_whole(provider, kind, name, prec, cl, lr, kernel)

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    t = benchmark.stats.stats.median
    h, w = lr.shape[:2]
    flops = 10 * _step_flops(h, w) + model.flops_per_pixel() * 4 * h * w
    sr = res["sr"]
    hh, ww = min(sr.shape[0], hr.shape[0]), min(sr.shape[1], hr.shape[1])
    info = dict(provider=provider, precision=prec, lr_size=[h, w], steps=10, gflops_per_s=flops / t / 1e9,
                sgemm_gflops_per_s=sgemm, psnr_y=psnr_y(sr[:hh, :ww], hr[:hh, :ww]),
                weights=WEIGHTS or "init_params(0)", threads=torch.get_num_threads())
    info.update(peak_rss_mib(provider))
    benchmark.extra_info.update(info)
