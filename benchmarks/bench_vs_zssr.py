"""MZSR vs vanilla ZSSR on one small image: wall time of the whole call per provider, with
PSNR/SSIM in ``extra_info``, bicubic as the floor, all in the same run.

    pytest benchmarks/bench_vs_zssr.py --benchmark-only [--benchmark-json OUT.json]

Providers: ``bicubic`` (MATLAB imresize), ``zssr`` (:func:`mzsr_fast.zssr_upscale`, official
defaults: lr policy, up to 3000 iterations, self-ensemble, back-projection), ``mzsr1`` and
``mzsr10`` (:func:`mzsr_fast.adapt_and_upscale` with the shipped weights, 1 / 10 steps).

Image: a centre crop of Set5 ``bird`` (``MZSR_BENCH_VS_ZSSR_SIZE`` HR pixels, default 128),
degraded per g^d_2.0 (isotropic Gaussian var 2.0, direct x2 subsampling).

Environment:
  MZSR_BENCH_DEVICE          cpu | cuda (default: cuda if available)
  MZSR_BENCH_VS_ZSSR_SIZE    HR crop side (default 128 -> a 64x64 LR)
  MZSR_BENCH_ZSSR_ITERS      ZSSR iteration cap (default 3000 = full on CUDA; 200 on CPU, where
                             the full run takes minutes: the cap is stated in extra_info)
  MZSR_BENCH_ROUNDS          timed rounds for bicubic / MZSR (default 5; ZSSR runs once)
  MZSR_FAST_DATA             the shared data folder (default ../shared/data)
For the full-length comparison on whole Set5 images use ``benchmarks/report_vs_zssr.py``.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from mzsr_fast import adapt_and_upscale, degrade, gaussian_kernel, imresize, model
from mzsr_fast.metrics import psnr_y, ssim_y
from mzsr_fast.zssr import ZSSRConfig, zssr_upscale

DEV = os.environ.get("MZSR_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
ON_CUDA = DEV.startswith("cuda")
SIZE = int(os.environ.get("MZSR_BENCH_VS_ZSSR_SIZE", "128"))
ZSSR_ITERS = int(os.environ.get("MZSR_BENCH_ZSSR_ITERS", "3000" if ON_CUDA else "200"))
ROUNDS = int(os.environ.get("MZSR_BENCH_ROUNDS", "5"))
DATA = os.environ.get("MZSR_FAST_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
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


def _sync():
    if ON_CUDA:
        torch.cuda.synchronize()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_vs_zssr(benchmark, case, provider):
    hr, lr = case
    out = {}
    if provider == "bicubic":
        fn, rounds = (lambda: imresize(lr, 2)), ROUNDS
    elif provider == "zssr":
        cfg = ZSSRConfig(max_iters=ZSSR_ITERS)

        def fn():
            sr, info = zssr_upscale(lr, 2, KERNEL, cfg, device=DEV, progress=False, seed=0, return_info=True)
            out["info"] = info
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
        _sync()

    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
    sr = out["sr"]
    extra = dict(provider=provider, device=DEV, lr_size=list(lr.shape[:2]), setting="g^d_2.0",
                 psnr=psnr_y(sr, hr, 2), ssim=ssim_y(sr, hr, 2))
    if provider == "zssr":
        info = out["info"]
        extra.update(zssr_max_iters=ZSSR_ITERS, zssr_iterations=info["iterations"], zssr_lr_changes=info["lr_changes"],
                     zssr_truncated=info["iterations"] >= ZSSR_ITERS and ZSSR_ITERS < 3000)
    benchmark.extra_info.update(extra)
    print(f"{provider}: PSNR {extra['psnr']:.2f} dB, SSIM {extra['ssim']:.4f}")
