"""Metrics (SPEC section 4): PSNR/SSIM on MATLAB's Y channel."""
import numpy as np
import pytest

from mzsr_fast.metrics import psnr_y, rgb_to_y, ssim_y


def test_y_channel_matlab_formula():
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]]], np.uint8)
    y = rgb_to_y(px)[0]
    np.testing.assert_allclose(y, [16 + 65.481, 16 + 128.553, 16 + 24.966, 235.0], atol=1e-9)


def test_psnr_known_value():
    hr = np.full((10, 10, 3), 100, np.uint8)
    sr = hr.copy()
    sr[..., :] = 101  # every Y shifts by (65.481+128.553+24.966)/255 = 219/255
    d = 219.0 / 255.0
    assert psnr_y(sr, hr, shave=2) == pytest.approx(10 * np.log10(255**2 / d**2), abs=1e-9)
    assert psnr_y(hr, hr, 2) == float("inf")


def test_psnr_shave_and_modcrop():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (21, 17, 3), dtype=np.uint8)
    sr = hr[:20, :16].copy()
    sr[0, 0] = 255 - sr[0, 0]  # inside the shaved border: no effect
    assert psnr_y(sr, hr, shave=2) == float("inf")
    sr[5, 5] = 255 - sr[5, 5]
    assert psnr_y(sr, hr, shave=2) < 100


def test_float_sr_is_rounded_first():
    hr = np.full((8, 8, 3), 128, np.uint8)
    sr = np.full((8, 8, 3), 128.4 / 255, np.float32)  # rounds to 128
    assert psnr_y(sr, hr, 1) == float("inf")


def test_ssim_properties():
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert ssim_y(hr, hr, 2) == pytest.approx(1.0, abs=1e-12)
    noisy = np.clip(hr.astype(int) + rng.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    s = ssim_y(noisy, hr, 2)
    assert 0 < s < 1
    worse = np.clip(hr.astype(int) + rng.integers(-60, 61, hr.shape), 0, 255).astype(np.uint8)
    assert ssim_y(worse, hr, 2) < s


def test_ssim_matches_independent_implementation():
    """Against a direct loop over 11x11 windows (Wang et al. 2004 formula)."""
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (15, 14, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    ax = np.arange(11) - 5.0
    g = np.exp(-(ax**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(ya.shape[0] - 10):
        for j in range(ya.shape[1] - 10):
            pa, pb = ya[i : i + 11, j : j + 11], yb[i : i + 11, j : j + 11]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    assert ssim_y(a, b, shave=0) == pytest.approx(np.mean(vals), abs=1e-10)
