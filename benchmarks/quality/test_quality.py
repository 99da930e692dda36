"""Quality per degradation setting and provider: MZSR(k) PSNR / SSIM (Y, shave = scale) on
Set5 at x2, with the wall time of the pass, the reference backend in the same run.

    pytest benchmarks/quality/test_quality.py --benchmark-only

For each setting of SPEC section 2 (``g^d_0.2``, ``g^d_2.0``, ``g^d_ani``, ``g^b_1.3``), each
HR image (mod-cropped to 2) is degraded by ``degrade(HR, k, 2, subsampling)`` (bit-exact
with the official LR for g^d_2.0) and upscaled by ``adapt_and_upscale(steps=k)`` with the
shipped weights.  One round = one pass over the images (after an untimed warm-up call);
the table gets the pass time (``quality/mzsr<k>_<setting>``, size = the image set) and the
mean PSNR / SSIM (``.../psnr_y`` in dB, ``.../ssim_y``).

Environment: MZSR_BENCH_QUALITY_IMAGES (comma list of Set5 stems, default all five),
MZSR_BENCH_QUALITY_SETTINGS (default all four), MZSR_BENCH_STEPS (default "10"),
MZSR_BENCH_ROUNDS (default 1), MZSR_FAST_DATA.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from benchmarks import harness as H

DEV = H.device()
SETTINGS = H.env_list("MZSR_BENCH_QUALITY_SETTINGS", "g^d_0.2,g^d_2.0,g^d_ani,g^b_1.3")
STEPS = H.env_list("MZSR_BENCH_STEPS", "10", int)
IMAGES = H.env_list("MZSR_BENCH_QUALITY_IMAGES", "baby,bird,butterfly,head,woman")
ROUNDS = H.rounds(cpu=1, cuda=3)
PROVIDERS = ["reference_tf32" if H.on_cuda() else "reference_fp32"] + [
    p for p in H.providers(("cpu", "triton", "cuda"))]


def load_set(names, scale=2):
    """-> [(name, HR (h, w, 3) uint8 mod-cropped to ``scale``)] from ``$MZSR_FAST_DATA/set5``."""
    from mzsr_fast.io import load_hr_image

    d = os.path.join(H.default_data_dir(), "set5")
    out = []
    for n in names:
        p = os.path.join(d, f"{n}.png")
        if not os.path.isfile(p):
            pytest.fail(f"{p} not found (set MZSR_FAST_DATA to the folder holding set5/)")
        out.append((n, load_hr_image(p, scale)))
    return out


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_quality(benchmark, provider, setting, steps):
    from mzsr_fast import adapt_and_upscale, degrade
    from mzsr_fast.degradation import setting as get_setting
    from mzsr_fast.metrics import psnr_y, ssim_y

    why = H.provider_skip(provider)
    if why:
        pytest.skip(why)
    name, prec, variant = H.split_provider(provider)
    H.set_tf32(prec == "tf32")
    kernel, sub = get_setting(setting)
    cases = [(n, hr, degrade(hr, kernel, 2, sub)) for n, hr in load_set(IMAGES)]
    out = {}

    def run():
        with H.cuda_variant(variant):
            for n, _, lr in cases:
                out[n] = adapt_and_upscale(lr, scale=2, kernel=kernel, steps=steps, subsampling=sub, backend=name,
                                           device=DEV, precision=prec)
        H.sync()

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    psnr = float(np.mean([psnr_y(out[n], hr, 2) for n, hr, _ in cases]))
    ssim = float(np.mean([ssim_y(out[n], hr, 2) for n, hr, _ in cases]))
    H.record(benchmark, f"quality/mzsr{steps}_{setting}", provider, "set5" if len(cases) == 5 else "+".join(IMAGES),
             metrics={"psnr_y": (psnr, "dB"), "ssim_y": (ssim, "1")}, images=IMAGES)
