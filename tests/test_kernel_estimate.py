"""Blind kernel estimation (issue 17): a known kernel is recovered from an image degraded with
it (kernel error and the PSNR of MZSR with the estimate), determinism for a seed, the random
setting's generator, and clear errors for bad options.  Small crops of the shipped demo
image, the cpu backend: a few seconds in all."""
import math
import os

import numpy as np
import pytest
import torch

from mzsr_fast import adapt_and_upscale, metrics
from mzsr_fast.degradation import degrade, gaussian_kernel
from mzsr_fast.kernel_estimate import (KERNEL_SIZE, estimate_kernel, kernel_error, random_kernel_params,
                                       random_kernels)

HR_PATH = os.path.join(os.path.dirname(__file__), "..", "mzsr_fast", "data", "butterfly_hr.png")
KW = dict(backend="cpu", device="cpu")


@pytest.fixture(scope="module")
def train_hr(data_dir):
    """A 256x256 centre crop of a training image (bsd200, never validation data)."""
    from PIL import Image

    with Image.open(os.path.join(data_dir, "train", "bsd200", "105053.png")) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.uint8)
    h, w = a.shape[:2]
    return np.ascontiguousarray(a[h // 2 - 128:h // 2 + 128, w // 2 - 128:w // 2 + 128])


@pytest.fixture(scope="module")
def hr():
    from PIL import Image

    with Image.open(HR_PATH) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)[64:192, 64:192].copy()  # 128x128, textured


@pytest.mark.parametrize("method, var, max_err, factor, max_db", [
    ("search", 2.0, 0.25, 1.5, 0.5),
    ("net", 2.0, 0.25, 1.5, 0.5),
    # a narrow blur: a small variance error is a large relative kernel error
    ("net", 0.2, 0.45, 2.0, 1.0),
])
def test_recovers_known_kernel(train_hr, method, var, max_err, factor, max_db):
    """An isotropic Gaussian of variance ``var`` is recovered (kernel error < ``max_err``,
    variance within ``factor``), and MZSR(5) with the estimate is within ``max_db`` of MZSR(5)
    with the true kernel and (a wide blur) 1 dB above kernel=None.  (The estimate is not this
    good on every image: docs/kernel_estimation.md.)"""
    hr = train_hr
    k = gaussian_kernel(KERNEL_SIZE, var)
    lr = degrade(hr, k, 2, "direct")
    est, info = estimate_kernel(lr, 2, "direct", method=method, **KW)
    assert info["method"] == method
    assert est.shape == (KERNEL_SIZE, KERNEL_SIZE) and est.dtype == np.float64
    assert abs(est.sum() - 1) < 1e-12 and np.all(est >= 0)
    # centred on the grid: the centre of mass is the middle pixel
    ys, xs = np.mgrid[:KERNEL_SIZE, :KERNEL_SIZE]
    c = (KERNEL_SIZE - 1) / 2
    assert abs((est * ys).sum() - c) < 1e-9 and abs((est * xs).sum() - c) < 1e-9
    err = kernel_error(est, k)
    assert err < max_err, (err, info["var1"])
    assert abs(math.log(info["var1"] / var)) < math.log(factor), info["var1"]
    psnr = {}
    for name, kk in (("true", k), ("est", est)):
        psnr[name] = metrics.psnr_y(adapt_and_upscale(lr, kernel=kk, steps=5, **KW), hr, 2)
    psnr["none"] = metrics.psnr_y(adapt_and_upscale(lr, kernel=None, steps=5, **KW), hr, 2)
    assert psnr["est"] > psnr["true"] - max_db, psnr
    if var >= 2:  # a wide blur: the bicubic assumption leaves a lot on the table
        assert psnr["est"] > psnr["none"] + 1.0, psnr
    if method == "search":
        assert info["evals"] >= 6 and len(info["candidates"]) == info["evals"]


def test_net_recovers_anisotropic(train_hr):
    """The predictor sees anisotropy along the image's axes: a vertical kernel (var 4 and 1 at
    pi/2) comes back with a kernel error under 0.3, the long axis within 0.35 rad.  (Diagonal
    orientations it reads poorly: docs/kernel_estimation.md.)"""
    k = gaussian_kernel(KERNEL_SIZE, 4.0, 1.0, math.pi / 2)
    est, info = estimate_kernel(degrade(train_hr, k, 2, "direct"), method="net", **KW)
    assert kernel_error(est, k) < 0.3, info
    d = (info["theta"] - math.pi / 2) % math.pi
    assert min(d, math.pi - d) < 0.35 and info["var1"] > 1.5 * info["var2"], info


def test_auto_method_and_missing_predictor(hr):
    """auto = the predictor where one is shipped (x2 direct), else the search (x4 direct has
    none); asking for the predictor where there is none is a clear error."""
    lr = degrade(hr[:96, :96], gaussian_kernel(KERNEL_SIZE, 1.5), 2, "direct")
    assert estimate_kernel(lr, **KW)[1]["method"] == "net"
    lr4 = degrade(hr, gaussian_kernel(KERNEL_SIZE, 3.0), 4, "direct")
    assert estimate_kernel(lr4, 4, budget=0.5, **KW)[1]["method"] == "search"
    with pytest.raises(ValueError, match="method='search'"):
        estimate_kernel(lr4, 4, method="net", **KW)


def test_deterministic_and_layouts(hr):
    """Same seed -> the same kernel and candidates; (1, 3, h, w) float32 and (h, w, 3) uint8
    inputs give the same estimate; progress is called per planned candidate."""
    lr = degrade(hr[:96, :96], gaussian_kernel(KERNEL_SIZE, 1.5), 2, "direct")
    calls = []
    a, ia = estimate_kernel(lr, budget=0.5, seed=3, progress=lambda d, t, s: calls.append((d, t, s)),
                            method="search", **KW)
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    b, ib = estimate_kernel(x, budget=0.5, seed=3, method="search", **KW)
    np.testing.assert_array_equal(a, b)
    assert ia["candidates"] == ib["candidates"] and ia["crops"] == ib["crops"]
    # one call per planned candidate (a repeated one is scored once: done counts the scored)
    assert len(calls) == calls[0][1] and calls[-1][0] == ia["evals"] and all(t == calls[0][1] for _, t, _ in calls)
    # the predictor: the same for both layouts; one progress call
    calls = []
    a, ia = estimate_kernel(lr, progress=lambda d, t, s: calls.append((d, t, s)), method="net", **KW)
    b, ib = estimate_kernel(x, method="net", **KW)
    np.testing.assert_array_equal(a, b)
    assert calls == [(1, 1, "kernel net")] and ia["method"] == "net" and ia["cost"] < 0.1


def test_net_large_image_crops_seeded(monkeypatch):
    """Above the whole-image limit the predictor reads seeded textured crops: the same seed
    gives the same crops and kernel."""
    import mzsr_fast.kernel_estimate as ke

    monkeypatch.setattr(ke, "_NET_MAX_PIXELS", 64 * 64)
    monkeypatch.setattr(ke, "_NET_CROP", 48)
    rng = np.random.default_rng(0)
    lr = (rng.random((100, 120, 3)) * 255).astype(np.uint8)
    a, ia = estimate_kernel(lr, method="net", seed=1, **KW)
    b, ib = estimate_kernel(lr, method="net", seed=1, **KW)
    np.testing.assert_array_equal(a, b)
    assert ia["crops"] == ib["crops"] and len(ia["crops"]) == ke._NET_CROPS and ia["crop"] == 48


def test_random_kernels_seeded():
    p1, p2 = random_kernel_params(20, seed=0), random_kernel_params(20, seed=0)
    assert p1 == p2 and p1 != random_kernel_params(20, seed=1)
    for p in p1:  # the meta-training distribution (SPEC section 3), x2
        assert 1 <= p["var2"] <= p["var1"] <= 5 and 0 <= p["theta"] < math.pi
    ks = random_kernels(20, seed=0)
    assert len(ks) == 20 and all(k.shape == (KERNEL_SIZE, KERNEL_SIZE) and abs(k.sum() - 1) < 1e-12 for k in ks)
    assert kernel_error(ks[0], ks[0]) == 0 and kernel_error(ks[0], ks[1]) > 0
    # different sizes compare on a common centred grid
    assert kernel_error(gaussian_kernel(21, 2.0), gaussian_kernel(15, 2.0)) < 0.01


@pytest.mark.parametrize("kw, match", [
    (dict(budget=0), "budget"),
    (dict(budget=float("nan")), "budget"),
    (dict(steps=0), "steps"),
    (dict(seed="1"), "seed"),
    (dict(scale=1), "scale"),
    (dict(subsampling="nearest"), "subsampling"),
    (dict(backend="nope"), "backend"),
    (dict(device="tpu"), "device"),
    (dict(progress=3), "progress"),
    (dict(method="kernelgan"), "method"),
])
def test_bad_options(kw, match):
    lr = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=match):
        estimate_kernel(lr, **{**KW, **kw})


def test_bad_images():
    with pytest.raises(ValueError, match="too small"):
        estimate_kernel(np.zeros((6, 6, 3), np.uint8), **KW)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        estimate_kernel(torch.full((1, 3, 32, 32), 2.0), **KW)
    with pytest.raises(TypeError):
        estimate_kernel("not an image", **KW)


def test_api_kernel_estimate(hr):
    """adapt_and_upscale(kernel="estimate") runs the estimate, then adapts with it as if given:
    the result equals a call with that kernel; info holds the kernel and the estimate."""
    lr = degrade(hr[:96, :96], gaussian_kernel(KERNEL_SIZE, 1.5), 2, "direct")
    sr, info = adapt_and_upscale(lr, kernel="estimate", steps=1, return_info=True, **KW)
    k = info["kernel"]
    assert k.shape == (KERNEL_SIZE, KERNEL_SIZE) and abs(k.sum() - 1) < 1e-9
    assert info["kernel_estimate"]["method"] == "net" and info["times"]["estimate"] > 0
    est, _ = estimate_kernel(lr, **KW)
    np.testing.assert_array_equal(k, est)  # the API's estimate is the function's, default options
    np.testing.assert_array_equal(sr, adapt_and_upscale(lr, kernel=est, steps=1, **KW))
    x = torch.from_numpy(np.stack([lr, lr])).permute(0, 3, 1, 2).float() / 255
    with pytest.raises(ValueError, match="one image per call"):
        adapt_and_upscale(x, kernel="estimate", steps=1, **KW)
    with pytest.raises(ValueError):
        adapt_and_upscale(lr, kernel="estimated", steps=1, **KW)  # a typo is not a kernel file
