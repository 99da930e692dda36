"""Degradation (SPEC section 2): bit-exactness on the official set5_g20 LR images, the
bicubic-baseline calibration numbers, imresize properties, kernels, numpy/torch parity."""
import glob
import os

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from scipy import ndimage

from mzsr_fast import degrade, gaussian_kernel, imresize
from mzsr_fast.degradation import check_kernel, correlate_reflect, setting
from mzsr_fast.metrics import psnr_y


def _rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_set5_g20_bit_exact(data_dir):
    k = scipy.io.loadmat(os.path.join(data_dir, "set5_g20", "kernel.mat"))["kernel"]
    files = sorted(glob.glob(os.path.join(data_dir, "set5", "*.png")))
    assert len(files) == 5
    for f in files:
        hr = _rgb(f)
        ref = _rgb(os.path.join(data_dir, "set5_g20", os.path.basename(f)))
        lr = degrade(hr, k, 2, "direct")
        assert lr.dtype == np.uint8 and lr.shape == ref.shape
        diff = int((lr != ref).sum())
        assert diff == 0, f"{os.path.basename(f)}: {diff} pixels differ from the official LR"


def test_gaussian_kernel_matches_official_g20(data_dir):
    k = scipy.io.loadmat(os.path.join(data_dir, "set5_g20", "kernel.mat"))["kernel"]
    np.testing.assert_allclose(gaussian_kernel(21, 2.0), k, rtol=0, atol=1e-12)


# SPEC section 2 calibration: bicubic upsampling of the LR, Set5, Y-PSNR.
CALIBRATION = {"g^d_0.2": 30.26, "g^d_2.0": 28.74, "g^d_ani": 28.16, "g^b_1.3": 30.56}


@pytest.mark.parametrize("name", sorted(CALIBRATION))
def test_bicubic_baseline_calibration(data_dir, name):
    kernel, sub = setting(name)
    ps = []
    for f in sorted(glob.glob(os.path.join(data_dir, "set5", "*.png"))):
        hr = _rgb(f)
        hr = hr[: hr.shape[0] // 2 * 2, : hr.shape[1] // 2 * 2]
        lr = degrade(hr, kernel, 2, sub)
        ps.append(psnr_y(imresize(lr, 2), hr, 2))
    mean = float(np.mean(ps))
    assert abs(mean - CALIBRATION[name]) <= 0.01, f"{name}: {mean:.4f} dB vs SPEC {CALIBRATION[name]}"


def test_correlate_matches_scipy_reflect():
    rng = np.random.default_rng(0)
    for h, w, ks in [(9, 7, 5), (3, 4, 7), (1, 1, 3), (12, 5, 15)]:
        x = rng.random((h, w))
        k = rng.random((ks, ks))
        ref = ndimage.correlate(x, k, mode="reflect")
        got = correlate_reflect(torch.from_numpy(x)[None, None], k)[0, 0].numpy()
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12, err_msg=f"shape {(h, w)} kernel {ks}")


def test_anisotropic_kernel_orientation():
    k = gaussian_kernel(15, 4.0, 1.0, 0.0)  # long axis along x (columns)
    assert abs(k.sum() - 1) < 1e-12
    c = 7
    assert k[c, c + 3] > k[c + 3, c]
    kr = gaussian_kernel(15, 4.0, 1.0, np.pi / 2)  # rotated: long axis along y
    np.testing.assert_allclose(kr, k.T, atol=1e-12)


def test_imresize_known_values():
    # Derived by hand from MATLAB's algorithm: output x=1 of an x2 upscale sits at input
    # u = 0.75; taps at (0-based) -2, -1, 0, 1 (mirrored to 1, 0, 0, 1) with cubic weights
    # -0.0234375, 0.2265625, 0.8671875, -0.0703125 -> on the row [1, 2]: 0.90625.
    row = imresize(np.array([[1.0, 2.0]]), output_shape=(1, 4))
    np.testing.assert_allclose(row[0, [0, 3]], [0.90625, 3 - 0.90625], atol=1e-12)
    # [1 2; 3 4] = 1 + col + 2 row is separable: (0, 0) = 1 - 0.09375 - 2 * 0.09375
    np.testing.assert_allclose(imresize(np.array([[1.0, 2.0], [3.0, 4.0]]), 2)[0, 0], 0.71875, atol=1e-12)
    # constant images stay constant (weights sum to 1), up and down
    c = np.full((9, 11, 3), 0.25)
    for s in (0.5, 2, 3, 1 / 3):
        np.testing.assert_allclose(imresize(c, s), 0.25, atol=1e-12)


def test_imresize_output_shape_and_kinds():
    rng = np.random.default_rng(1)
    u8 = (rng.random((13, 10, 3)) * 255).astype(np.uint8)
    out = imresize(u8, 0.5)
    assert out.dtype == np.uint8 and out.shape == (7, 5, 3)
    assert imresize(u8, output_shape=(26, 20)).shape == (26, 20, 3)
    t = torch.from_numpy(u8).permute(2, 0, 1).float() / 255
    np.testing.assert_allclose(
        imresize(t, 2).permute(1, 2, 0).numpy(), imresize(u8.astype(np.float64) / 255, 2), atol=1e-5
    )
    with pytest.raises(TypeError):
        imresize([1, 2, 3], 2)


def test_degrade_numpy_torch_float_parity():
    rng = np.random.default_rng(2)
    hr = rng.random((24, 18, 3))
    k = gaussian_kernel(7, 1.5)
    for sub in ("direct", "bicubic"):
        a = degrade(hr, k, 2, sub)
        b = degrade(torch.from_numpy(hr).permute(2, 0, 1), k, 2, sub).permute(1, 2, 0).numpy()
        bb = degrade(torch.from_numpy(hr).permute(2, 0, 1)[None], k, 2, sub)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(a, b, atol=1e-12)
        np.testing.assert_allclose(a, bb, atol=1e-12)
    assert degrade(hr, k, 2, "direct").shape == (12, 9, 3)
    q = degrade(hr.astype(np.float32), k, 2, quantize=True)
    np.testing.assert_allclose(q * 255, np.round(q * 255), atol=1e-4)


@pytest.mark.parametrize(
    "bad,err",
    [
        (np.ones((4,)), ValueError),
        (np.ones((4, 4)), ValueError),
        (np.full((3, 3), np.nan), ValueError),
        (np.zeros((3, 3)), ValueError),
        (-np.ones((3, 3)), ValueError),
        ("not a kernel", TypeError),
    ],
)
def test_check_kernel_errors(bad, err):
    with pytest.raises(err):
        check_kernel(bad)


def test_degrade_bad_args():
    x = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="subsampling"):
        degrade(x, None, 2, "nearest")
    with pytest.raises(ValueError, match="scale"):
        degrade(x, None, 0)
    with pytest.raises(TypeError):
        degrade([[1]], None, 2)
