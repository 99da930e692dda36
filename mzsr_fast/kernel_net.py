"""A small CNN that predicts an image's Gaussian blur kernel from the LR image alone.

``KernelNet`` reads an LR image ``x: (N, 3, h, w) float32 in [0, 1]`` and returns, per image,
the matrix logarithm of the kernel's covariance (HR pixels^2), ``L = R diag(log var1, log var2)
R^T``, as its three entries ``(L_xx, L_yy, L_xy)``: a smooth, unambiguous parameterisation
(isotropic kernels are ``L_xy = 0``, ``L_xx = L_yy = log var``; the angle of a near-isotropic
kernel, which nobody can see, costs nothing).  The network is fully convolutional: every LR
pixel predicts ``L`` and a confidence logit, and the image's estimate is the
softmax(confidence)-weighted mean over the pixels, so flat regions, which say nothing about
the blur, can learn to abstain (KernelGAN samples its crops by gradient energy for the same
reason).

Trained (``python -m mzsr_fast.train.kernel_net``, runs/kernel_net_x2d/) on crops of
``../shared/data/train`` degraded with random Gaussians by the exact degradation of SPEC
section 2, one file per ``(scale, subsampling)``: ``weights/kernelnet_x<s>_<sub>.safetensors``.
:func:`mzsr_fast.kernel_estimate.estimate_kernel` uses it when it exists for the setting.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .refine import frame

__all__ = ["KernelNet", "ARCH", "params_to_logcov", "logcov_to_params", "weights_path", "load", "save", "predict", "macs_per_pixel", "local_contrast_norm", "dihedral_matrix"]

ARCH = "kernelnet-v2"  # v2: local contrast normalisation of the input
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class KernelNet(torch.nn.Module):
    """``width`` channels, ``depth`` 3x3 conv+ReLU layers (the 4th and 5th dilated by 2 for a
    ~23-pixel receptive field at little cost), then a 1x1 head: 3 log-covariance entries and
    one confidence logit per pixel."""

    def __init__(self, width: int = 48, depth: int = 7):
        super().__init__()
        self.width, self.depth = int(width), int(depth)
        layers, c = [], 3
        for i in range(self.depth):
            d = 2 if i in (3, 4) else 1
            layers.append(torch.nn.Conv2d(c, self.width, 3, padding=d, dilation=d))
            c = self.width
        self.body = torch.nn.ModuleList(layers)
        self.head = torch.nn.Conv2d(self.width, 4, 1)

    def maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel ``(L (N, 3, h, w), logit (N, 1, h, w))``."""
        y = local_contrast_norm(x)
        for conv in self.body:
            y = F.relu(conv(y))
        out = self.head(y)
        return out[:, :3], out[:, 3:]

    def forward(self, x: torch.Tensor, margin: int = 4) -> torch.Tensor:
        """``x: (N, 3, h, w)`` float32 in [0, 1] -> ``(N, 3)`` log-covariance entries; pixels
        within ``margin`` of the border (zero padding) are left out of the pooling."""
        L, logit = self.maps(x)
        h, w = x.shape[-2:]
        if min(h, w) > 4 * margin:
            L = L[..., margin:h - margin, margin:w - margin]
            logit = logit[..., margin:h - margin, margin:w - margin]
        wgt = torch.softmax(logit.flatten(2), dim=-1)  # (N, 1, P)
        return (L.flatten(2) * wgt).sum(-1)


def local_contrast_norm(x: torch.Tensor, radius: int = 4, eps: float = 0.02) -> torch.Tensor:
    """``(x - local mean) / (local std + eps)`` over ``(2 radius + 1)^2`` windows, per channel.

    The blur shows as the ratio of an edge's slope to its contrast; dividing the contrast out
    makes that ratio the input.  With raw ``x - 0.5`` inputs the held-out loss stayed at the
    predict-the-mean level (2.51 against 2.5) after 250 steps, with this normalisation it fell
    to 1.27 (runs/kernel_net_x2d/exp_input_norm.log)."""
    k = 2 * radius + 1
    m = F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), k, 1)
    d = x - m
    s = F.avg_pool2d(F.pad(d * d, (radius,) * 4, mode="replicate"), k, 1).sqrt()
    return d / (s + eps)


def macs_per_pixel(net: KernelNet) -> int:
    """Multiply-adds of one forward per input pixel."""
    return 9 * (3 * net.width + (net.depth - 1) * net.width * net.width) + 4 * net.width


def params_to_logcov(var1: float, var2: float, theta: float) -> np.ndarray:
    """``(L_xx, L_yy, L_xy)`` of the covariance ``R(theta) diag(var1, var2) R(theta)^T``
    (the convention of :func:`mzsr_fast.degradation.gaussian_kernel`)."""
    c, s = math.cos(theta), math.sin(theta)
    a, b = math.log(var1), math.log(var2)
    return np.array([a * c * c + b * s * s, a * s * s + b * c * c, (a - b) * c * s], np.float64)


def logcov_to_params(L) -> dict:
    """Inverse of :func:`params_to_logcov`: ``dict(var1 >= var2, theta in [0, pi))``."""
    lxx, lyy, lxy = (float(v) for v in L)
    w, v = np.linalg.eigh(np.array([[lxx, lxy], [lxy, lyy]]))
    i = int(np.argmax(w))
    theta = math.atan2(v[1, i], v[0, i]) % math.pi
    return dict(var1=float(math.exp(w[i])), var2=float(math.exp(w[1 - i])), theta=float(theta))


def weights_path(scale: int, subsampling: str) -> Path:
    return WEIGHTS_DIR / f"kernelnet_x{int(scale)}_{subsampling}.safetensors"


def save(path, net: KernelNet, metadata: dict | None = None) -> None:
    """Write ``net`` as safetensors (atomically), with its arch and size in the metadata."""
    from . import model as _model

    meta = {"arch": ARCH, "width": str(net.width), "depth": str(net.depth), **(metadata or {})}
    _model.write_safetensors(path, net.state_dict(), meta)


_CACHE: dict = {}


def load(path, device=None) -> KernelNet:
    """A :class:`KernelNet` from a safetensors file written by :func:`save` (shipped files are
    checked against ``weights/SHA256SUMS``).  ``ValueError`` naming the file if it is missing,
    corrupt or not a kernel net."""
    from safetensors import safe_open

    from . import model as _model

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"kernel-net weights not found: {path}")
    key = (str(path.resolve()), path.stat().st_mtime_ns, str(device))
    if key in _CACHE:
        return _CACHE[key]
    _model.verify_shipped(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("arch") != ARCH:
            raise ValueError(f"arch {meta.get('arch')!r}, expected {ARCH!r}")
        net = KernelNet(int(meta["width"]), int(meta["depth"]))
        net.load_state_dict(state)
    except Exception as e:  # SafetensorError, the arch, missing keys, wrong shapes
        raise ValueError(f"cannot read kernel-net weights {path}: {e}") from e
    net = net.to(device or "cpu").eval()
    _CACHE.clear()  # one file at a time is all a process needs
    _CACHE[key] = net
    return net


def dihedral_matrix(code: int) -> np.ndarray:
    """``M`` with ``(x, y)_out = M (x, y)_in`` (x = column, y = row, about the centre) for
    :func:`mzsr_fast.refine.frame` (``rot90`` by ``code % 4`` quarter turns, then a mirror if
    ``code >= 4``): a quarter turn maps ``(x, y)`` to ``(y, -x)``, the flip ``x`` to ``-x``;
    a kernel's covariance (and its matrix logarithm) becomes ``M S M^T``."""
    r = np.array([[0.0, 1.0], [-1.0, 0.0]])
    m = np.linalg.matrix_power(r, code % 4)
    return (np.diag([-1.0, 1.0]) @ m) if code >= 4 else m


def _to_mat(L):
    return np.array([[L[0], L[2]], [L[2], L[1]]], np.float64)


@torch.no_grad()
def predict(net: KernelNet, x: torch.Tensor, boxes: list[tuple[int, int]] | None = None, crop: int = 0,
            tta: bool = False) -> np.ndarray:
    """The log-covariance ``(3,)`` float64 for the LR image ``x: (1, 3, h, w)``: the whole image
    in one pass, or the mean over the crops ``boxes`` (top-left corners) of side ``crop``.
    ``tta``: the mean over the 8 flips/rotations of the input, each prediction mapped back to
    the image's frame (``M^T L M``), which makes the estimate exactly equivariant."""
    dev = next(net.parameters()).device
    if boxes:
        ch, cw = min(crop, x.shape[-2]), min(crop, x.shape[-1])
        xs = torch.cat([x[..., y:y + ch, x0:x0 + cw] for y, x0 in boxes]).to(dev)
    else:
        xs = x.to(dev)
    return _predict(net, xs, tta)


@torch.no_grad()
def _predict(net, xs, tta):
    acc = np.zeros((2, 2))
    codes = range(8) if tta else (0,)
    for c in codes:
        L = net(frame(xs, c)).mean(0).double().cpu().numpy()
        m = dihedral_matrix(c)
        acc += m.T @ _to_mat(L) @ m
    acc /= len(codes)
    return np.array([acc[0, 0], acc[1, 1], acc[0, 1]])
