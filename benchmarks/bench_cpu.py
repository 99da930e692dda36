"""CPU benchmarks of the native ``cpu`` backend against the plain-PyTorch baselines, all in
the same run (compare ratios: the machine may be shared).

    pytest benchmarks/bench_cpu.py --benchmark-only [--benchmark-json OUT.json]

Providers (``provider``):
  reference                 ReferenceBackend, NCHW autograd (oneDNN)
  reference_channels_last   the same with channels_last tensors
  module_sgd / module_sgd_cl  a plain ``nn.Module`` (MZSRNet) + ``torch.optim.SGD`` loop, NCHW / channels_last
  cpu / cpu_bf16            the compiled backend, fp32 and the bf16 fast mode (AVX512_BF16 CPUs)
  cpu_direct                the compiled backend in fp32 with Winograd off (direct 3x3 kernels only)

Cases:
  test_step                 one adaptation step at S x S (default 128, 256; 512 with MZSR_BENCH_CPU_LARGE=1)
  test_whole_baby           ``adapt_and_upscale(steps=10)`` on Set5 ``baby`` (the official g^d_2.0 LR,
                            256^2 -> 512^2), with MZSR_BENCH_CPU_WHOLE=1 (about 1-2 min per provider
                            on a 2-core machine); extra_info holds the Y-PSNR against the HR image
                            and the peak RSS of the call measured in a fresh subprocess.

Interleaved whole-call run (what the README's CPU table quotes): every provider's
``adapt_and_upscale(steps=10)`` on Set5 ``baby`` round-robin in one process, with the load
average next to each measurement, ratios within each round, and the PSNR of cpu vs reference:

    OMP_NUM_THREADS=1 python -m benchmarks.bench_cpu --out benchmarks/results/X.json [--rounds 3] [--threads 1]

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
        out.append(("cpu_direct", "backend", "cpu", "fp32", False))
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


class _winograd:
    """Context: the cpu backend's Winograd switch for a provider ("cpu_direct": off), the
    previous mode restored after."""

    def __init__(self, provider):
        self.mode = "off" if provider == "cpu_direct" else None

    def __enter__(self):
        if self.mode:
            self.old = torch.ops.mzsr_fast.cpu_winograd("").split(":")[0]
            torch.ops.mzsr_fast.cpu_winograd(self.mode)

    def __exit__(self, *exc):
        if self.mode:
            torch.ops.mzsr_fast.cpu_winograd(self.old)


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

        def fn():
            with _winograd(provider):
                return b.step(x, tgt, 1e-3)
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


def _run_whole(provider, kind, name, prec, cl, lr, kernel, params=None):
    """-> SR as uint8 HWC numpy.  params: the weights (default PARAMS)."""
    with _winograd(provider):
        return _run_whole_(provider, kind, name, prec, cl, lr, kernel, PARAMS if params is None else params)


def _run_whole_(provider, kind, name, prec, cl, lr, kernel, PARAMS):
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


# ---------------------------------------------------------------------------- interleaved run
def interleaved(providers, rounds=3, params=None, psnr_ref=True):
    """Whole adapt_and_upscale(steps=10) on Set5 baby for each provider, round-robin:
    one untimed warm-up call each, then `rounds` rounds.  -> dict (JSON-able): per provider
    the wall and process-CPU seconds and the 1-minute load average before each call, the
    per-round ratios of every provider's wall time to cpu's, the Y-PSNR of each against
    the HR image, and (psnr_ref) the reference backend's output and its PSNR vs cpu's."""
    import time

    from mzsr_fast.metrics import psnr_y

    lr, hr, kernel = _baby()
    table = {p[0]: p for p in PROVIDERS}
    out = {"providers": list(providers), "rounds": rounds, "wall_s": {}, "process_cpu_s": {}, "load_avg_1m": {},
           "psnr_y": {}}
    srs = {}

    def crop_psnr(a, b):
        hh, ww = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
        return float(psnr_y(a[:hh, :ww], b[:hh, :ww]))

    for name in providers:  # warm-up (arena, oneDNN primitives), also the PSNR outputs
        srs[name] = _run_whole(*table[name], lr, kernel, params)
        out["psnr_y"][name] = crop_psnr(srs[name], hr)
        for k in ("wall_s", "process_cpu_s", "load_avg_1m"):
            out[k][name] = []
    for r in range(rounds):
        for name in providers:
            la = os.getloadavg()[0]
            t0, c0 = time.perf_counter(), time.process_time()
            _run_whole(*table[name], lr, kernel, params)
            out["wall_s"][name].append(round(time.perf_counter() - t0, 3))
            out["process_cpu_s"][name].append(round(time.process_time() - c0, 3))
            out["load_avg_1m"][name].append(round(la, 2))
            print(f"round {r} {name}: {out['wall_s'][name][-1]:.2f} s (load {la:.2f})", flush=True)
    base = "cpu" if "cpu" in providers else providers[0]
    out["ratio_to_cpu_per_round"] = {
        n: [round(a / b, 3) for a, b in zip(out["wall_s"][n], out["wall_s"][base])] for n in providers}
    out["ratio_of_best"] = {n: round(min(out["wall_s"][n]) / min(out["wall_s"][base]), 3) for n in providers}
    if psnr_ref:
        ref = _run_whole("reference", "backend", "reference", "fp32", False, lr, kernel, params)
        out["psnr_y"]["reference"] = crop_psnr(ref, hr)
        out["psnr_cpu_vs_reference_db"] = {n: (float("inf") if np.array_equal(srs[n], ref) else crop_psnr(srs[n], ref))
                                           for n in providers if n.startswith("cpu")}
        out["max_abs_diff_uint8_vs_reference"] = {
            n: int(np.abs(srs[n].astype(int) - ref.astype(int)).max()) for n in providers if n.startswith("cpu")}
    return out


def main(argv=None):
    import argparse

    from mzsr_fast.benchutil import machine_info

    ap = argparse.ArgumentParser(description="interleaved whole-call CPU benchmark (Set5 baby, steps=10)")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads (default 1: less noise)")
    ap.add_argument("--providers", default="cpu,cpu_direct,module_sgd,module_sgd_cl")
    ap.add_argument("--weights", default=None, help="safetensors (default: the shipped x2 direct weights)")
    ap.add_argument("--peak-rss", default="", help="comma list of providers whose peak RSS of one call to measure "
                    "(each in a fresh subprocess, weights init_params(0)), e.g. cpu,reference")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.weights:
        params, wname = model.load_weights(a.weights, verify=False)[0], a.weights
    else:
        path = model.default_weights_path(2, "direct")
        params, wname = model.load_weights(path)[0], os.path.relpath(str(path), ROOT)
    provs = [p for p in a.providers.split(",") if p]
    unknown = [p for p in provs if p not in IDS]
    if unknown:
        raise SystemExit(f"unknown or unavailable providers {unknown}; here: {IDS}")
    res = {"what": "adapt_and_upscale(steps=10) on Set5 baby (official g^d_2.0 LR 256x256 -> 512x512), fp32, "
                   "providers round-robin in one process (benchmarks/bench_cpu.py main)",
           "machine": machine_info(), "threads": a.threads, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
           "weights": wname, "winograd_mode": torch.ops.mzsr_fast.cpu_winograd("") if "cpu" in IDS else None}
    res.update(interleaved(provs, a.rounds, params))
    if a.peak_rss:
        res["peak_rss_mib"] = {p: peak_rss_mib(p) for p in a.peak_rss.split(",") if p}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps({k: res[k] for k in ("wall_s", "ratio_of_best", "psnr_y")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
