"""The kernel predictor (mzsr_fast.kernel_net) on its own: the log-covariance parameterisation
against gaussian_kernel's covariance, pooling, save/load and its errors, and the training
script (a few steps on three training images, resumed)."""
import json
import os
import math

import numpy as np
import pytest
import torch

from mzsr_fast import kernel_net as kn
from mzsr_fast.degradation import gaussian_kernel
from mzsr_fast.refine import frame


def _cov_of(k):
    """Second moments of a (normalised) kernel on its grid (x = column, y = row)."""
    n = k.shape[0]
    ys, xs = np.mgrid[:n, :n] - (n - 1) / 2
    return np.array([[(k * xs * xs).sum(), (k * xs * ys).sum()], [(k * xs * ys).sum(), (k * ys * ys).sum()]])


@pytest.mark.parametrize("v1, v2, th", [(4.0, 1.0, -0.5), (2.0, 2.0, 0.0), (3.0, 1.5, 2.0), (0.2, 0.2, 1.0),
                                        (5.0, 1.0, math.pi / 2)])
def test_logcov_matches_gaussian_kernel(v1, v2, th):
    """exp of the log-covariance is the covariance gaussian_kernel samples (x = column): checked
    on the kernel's own second moments (a wide grid, so truncation is negligible), and the
    inverse gives the same kernel back (var1 >= var2, theta in [0, pi))."""
    L = kn.params_to_logcov(v1, v2, th)
    w, v = np.linalg.eigh(np.array([[L[0], L[2]], [L[2], L[1]]]))
    cov = v @ np.diag(np.exp(w)) @ v.T
    if min(v1, v2) >= 1:  # a narrow kernel's sampled moments differ from the continuous ones
        np.testing.assert_allclose(_cov_of(gaussian_kernel(41, v1, v2, th)), cov, atol=2e-3)
    p = kn.logcov_to_params(L)
    assert p["var1"] >= p["var2"] and 0 <= p["theta"] < math.pi
    np.testing.assert_allclose(gaussian_kernel(15, p["var1"], p["var2"], p["theta"]), gaussian_kernel(15, v1, v2, th),
                               atol=1e-12)


def test_forward_shapes_and_pooling():
    """(N, 3, h, w) -> (N, 3), odd and small sizes; the pooled value is a convex combination
    of the per-pixel maps (inside the margin)."""
    torch.manual_seed(0)
    net = kn.KernelNet(8, 3)
    for h, w in [(17, 23), (9, 9), (64, 31)]:
        x = torch.rand(2, 3, h, w)
        out = net(x)
        assert out.shape == (2, 3)
        L, _ = net.maps(x)
        m = 4 if min(h, w) > 16 else 0
        inner = L[..., m:h - m or None, m:w - m or None].flatten(2)
        assert torch.all(out >= inner.min(-1).values - 1e-6) and torch.all(out <= inner.max(-1).values + 1e-6)
    assert kn.macs_per_pixel(net) == 9 * (3 * 8 + 2 * 8 * 8) + 4 * 8


def test_predict_crops_is_mean_over_crops():
    torch.manual_seed(0)
    net = kn.KernelNet(8, 3).eval()
    x = torch.rand(1, 3, 40, 50)
    boxes = [(0, 0), (8, 10)]
    got = kn.predict(net, x, boxes, 24)
    want = torch.stack([net(x[..., y:y + 24, c:c + 24])[0] for y, c in boxes]).mean(0).detach().double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kn.predict(net, x), net(x)[0].detach().double().numpy(), rtol=1e-5, atol=1e-6)


def test_save_load_roundtrip_and_errors(tmp_path):
    torch.manual_seed(0)
    net = kn.KernelNet(8, 3)
    p = tmp_path / "k.safetensors"
    kn.save(p, net, {"step": 5})
    got = kn.load(p)
    x = torch.rand(1, 3, 20, 20)
    torch.testing.assert_close(got(x), net(x))
    with pytest.raises(ValueError, match="not found"):
        kn.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read kernel-net weights"):
        kn.load(bad)
    # an SR weights file is not a kernel net
    from mzsr_fast import model
    sr = tmp_path / "sr.safetensors"
    model.save_weights(sr, model.init_params())
    with pytest.raises(ValueError, match="arch"):
        kn.load(sr)


def test_training_script_runs_and_resumes(tmp_path, data_dir):
    """Three steps on the first 12 training images, then three more from the checkpoint: the
    log holds validations, the weights load as a KernelNet."""
    from mzsr_fast.train import kernel_net as tk

    out = tmp_path / "run"
    args = ["--out", str(out), "--data", os.path.join(data_dir, "train"), "--max-images", "12", "--width", "8",
            "--depth", "3", "--patch", "24", "--batch", "4", "--val-every", "3", "--ckpt-every", "3"]
    assert tk.main(args + ["--iters", "3"]) == 0
    assert torch.load(out / "ckpt.pt", weights_only=True)["step"] == 3
    assert tk.main(args + ["--iters", "6"]) == 0
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [3, 6] and all(math.isfinite(r["val_loss"]) for r in recs)
    net = kn.load(out / "kernelnet.safetensors")
    assert net.width == 8 and net.depth == 3
    # a fine-tune starts from the given weights (one step at a tiny rate: close to them)
    ft = tmp_path / "ft"
    assert tk.main(args[:1] + [str(ft)] + args[2:] + ["--iters", "1", "--init", str(out / "kernelnet.safetensors"),
                                                      "--lr", "1e-9", "--val-every", "1"]) == 0
    tuned = kn.load(ft / "kernelnet.safetensors")
    for (name, a), b in zip(net.state_dict().items(), tuned.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)


def test_sample_kernel_covers_the_settings():
    """The training distribution covers the paper's variances (0.2, 2.0, (4, 1)) and the random
    setting's [1, 5]: both isotropic and anisotropic draws, inside the bounds."""
    from mzsr_fast.train.kernel_net import sample_kernel

    rng = np.random.default_rng(0)
    ks = [sample_kernel(rng, 0.12, 6.0) for _ in range(2000)]
    iso = [k for k in ks if k[0] == k[1]]
    assert 0.25 < len(iso) / len(ks) < 0.45
    assert all(0.12 <= k[1] <= k[0] <= 6.0 for k in ks)
    assert min(k[0] for k in iso) < 0.2 and max(k[0] for k in iso) > 4


@pytest.mark.parametrize("code", range(8))
def test_dihedral_matrix_maps_kernel_covariance(code):
    """Transforming a kernel image by a flip/rotation transforms its covariance by M S M^T."""
    k = gaussian_kernel(41, 4.0, 1.0, 0.3)
    got = _cov_of(frame(torch.from_numpy(k), code).numpy())
    m = kn.dihedral_matrix(code)
    np.testing.assert_allclose(got, m @ _cov_of(k) @ m.T, atol=1e-9)


def test_tta_prediction_is_equivariant():
    """With tta the estimate of a transformed image is the transformed estimate (exactly, up to
    float error), for any network."""
    torch.manual_seed(0)
    net = kn.KernelNet(8, 3).eval()
    x = torch.rand(1, 3, 30, 30)
    L = kn.predict(net, x, tta=True)
    S = np.array([[L[0], L[2]], [L[2], L[1]]])
    for code in (1, 5):
        La = kn.predict(net, frame(x, code), tta=True)
        m = kn.dihedral_matrix(code)
        want = m @ S @ m.T
        np.testing.assert_allclose([La[0], La[1], La[2]], [want[0, 0], want[1, 1], want[0, 1]], atol=1e-5)
