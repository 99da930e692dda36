"""MZSR vs vanilla ZSSR on one small image: wall time of the whole call per provider, with
PSNR/SSIM in ``extra_info``, bicubic as the floor, all in the same run.

    pytest benchmarks/quality/test_vs_zssr.py --benchmark-only

Providers: ``bicubic`` (MATLAB imresize), ``zssr`` (:func:`mzsr_fast.zssr_upscale`, official
defaults: lr policy, up to 3000 iterations, self-ensemble, back-projection), ``mzsr1`` and
``mzsr10`` (:func:`mzsr_fast.adapt_and_upscale` with the shipped weights, 1 / 10 steps).  ZSSR's network
is also scored during its training in the same run (report_vs_zssr.zssr_with_curve): rows
``quality/vs_zssr/zssr_curve/psnr_y`` with provider ``zssr@<iteration>`` and their training
seconds, for the PSNR-vs-time curve.

Image: a centre crop of Set5 ``bird`` (``MZSR_BENCH_VS_ZSSR_SIZE`` HR pixels, default 128),
degraded per g^d_2.0 (isotropic Gaussian var 2.0, direct x2 subsampling).

Environment:
  MZSR_BENCH_DEVICE          cpu | cuda (default: cuda if available)
  MZSR_BENCH_VS_ZSSR_SIZE    HR crop side (default 128 -> a 64x64 LR)
  MZSR_BENCH_ZSSR_ITERS      ZSSR iteration cap (default 3000 = full on CUDA; 200 on CPU, where
                             the full run takes minutes: the cap is stated in extra_info)
  MZSR_BENCH_ROUNDS          timed rounds for bicubic / MZSR (default 5; ZSSR runs once)
  MZSR_FAST_DATA             the shared data folder (default ../shared/data)
For the full-length comparison on whole Set5 images (report, table and plot) use
``benchmarks/quality/report_vs_zssr.py``.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from benchmarks import harness as H
from benchmarks.quality.report_vs_zssr import zssr_with_curve
from mzsr_fast import adapt_and_upscale, degrade, gaussian_kernel, imresize, model
from mzsr_fast.metrics import psnr_y, ssim_y
from mzsr_fast.zssr import ZSSRConfig

DEV = H.device()
ON_CUDA = H.on_cuda()
SIZE = int(os.environ.get("MZSR_BENCH_VS_ZSSR_SIZE", "128"))
ZSSR_ITERS = int(os.environ.get("MZSR_BENCH_ZSSR_ITERS", "3000" if ON_CUDA else "200"))
ROUNDS = H.rounds(cpu=5, cuda=5)
DATA = H.default_data_dir()
CURVE = [i for i in (10, 25, 50, 100, 200, 400, 800, 1600) if i < ZSSR_ITERS]
KERNEL = gaussian_kernel(21, 2.0)
PROVIDERS = ["bicubic", "zssr", "mzsr1", "mzsr10"]


@pytest.fixture(scope="module")
def case():
    path = os.path.join(DATA, "set5", "bird.png")
    if not os.path.isfile(path):
        pytest.fail(f"Set5 not found at {path} (set MZSR_FAST_DATA)")
    hr = np.asarray(Image.open(path).convert("RGB"))
    y0, x0 = (hr.shape[0] - SIZE) // 2 // 2 * 2, (hr.shape[1] - SIZE) // 2 // 2 * 2
    hr = np.ascontiguousarray(hr[y0:y0 + SIZE, x0:x0 + SIZE])
    return hr, degrade(hr, KERNEL, 2, "direct")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_vs_zssr(benchmark, case, provider):
    hr, lr = case
    out = {}
    if provider == "bicubic":
        fn, rounds = (lambda: imresize(lr, 2)), ROUNDS
    elif provider == "zssr":
        cfg = ZSSRConfig(max_iters=ZSSR_ITERS)

        def fn():
            sr, info, curve = zssr_with_curve(lr, hr, 2, KERNEL, cfg, DEV, 0, CURVE)
            out["info"], out["curve"] = info, curve
            return sr

        rounds = 1
    else:
        steps = int(provider[4:])
        try:
            model.default_weights_path(2, "direct")
        except ValueError as e:
            pytest.skip(f"no shipped MZSR weights yet: {e}")
        fn = lambda: adapt_and_upscale(lr, kernel=KERNEL, steps=steps, device=DEV)  # noqa: E731
        fn()  # warm-up (weights load, backend set-up)
        rounds = ROUNDS

    def run():
        out["sr"] = fn()
        H.sync()

    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
    sr = out["sr"]
    extra = dict(device=DEV, lr_size=list(lr.shape[:2]), setting="g^d_2.0",
                 psnr=psnr_y(sr, hr, 2), ssim=ssim_y(sr, hr, 2))
    if provider == "zssr":
        info = out["info"]
        extra.update(zssr_max_iters=ZSSR_ITERS, zssr_iterations=info["iterations"], zssr_lr_changes=info["lr_changes"],
                     zssr_truncated=info["iterations"] >= ZSSR_ITERS and ZSSR_ITERS < 3000)
    metrics = {"psnr_y": (extra.pop("psnr"), "dB"), "ssim_y": (extra.pop("ssim"), "1")}
    H.record(benchmark, "quality/vs_zssr", provider, f"bird{SIZE}", metrics=metrics, **extra)
    if provider == "zssr" and getattr(benchmark, "stats", None):  # the curve: (training s, PSNR) per checkpoint
        for c in out["curve"]:
            H.RECORDS.append(("quality/vs_zssr/zssr_curve/seconds", f"zssr@{c['iteration']}", f"bird{SIZE}", "s",
                              [c["seconds"]]))
            H.RECORDS.append(("quality/vs_zssr/zssr_curve/psnr_y", f"zssr@{c['iteration']}", f"bird{SIZE}", "dB",
                              [c["psnr"]]))
    print(f"{provider}: PSNR {metrics['psnr_y'][0]:.2f} dB, SSIM {metrics['ssim_y'][0]:.4f}")
