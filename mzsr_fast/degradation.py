"""Degradation model of SPEC section 2: Gaussian kernels, MATLAB-compatible bicubic
``imresize`` written in torch ops, and ``degrade`` (blur + direct or bicubic subsampling).

Everything here works on torch tensors (CPU or GPU) and, through thin wrappers, on numpy
arrays.  Layouts:

* torch: ``(C, H, W)`` or ``(N, C, H, W)``; float (any) or uint8.
* numpy: ``(H, W)`` or ``(H, W, C)``; float or uint8.

uint8 inputs are computed in float64 and rounded half-up (MATLAB ``round`` for the
non-negative values seen here) back to uint8, which is what makes ``degrade`` reproduce
the official MZSR LR images bit-exactly.  Float inputs are computed in their own dtype
(float32 images stay float32) and are not rounded unless ``quantize=True``.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["gaussian_kernel", "imresize", "degrade", "correlate_reflect", "check_kernel", "SETTINGS", "setting"]


# ----------------------------------------------------------------------------- kernels
def gaussian_kernel(size: int, var1: float, var2: float | None = None, theta: float = 0.0) -> np.ndarray:
    """Gaussian blur kernel ``(size, size) float64`` summing to 1.

    Covariance ``R(theta) diag(var1, var2) R(theta)^T`` over the coordinate vector
    ``(x, y)`` (x = column, y = row), sampled on a ``size x size`` grid centred at
    ``(size - 1) / 2``.  ``var1``/``var2`` are *variances*.  ``var2=None`` is isotropic.
    """
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"gaussian_kernel: size must be a positive int, got {size!r}")
    var2 = var1 if var2 is None else var2
    if not (var1 > 0 and var2 > 0) or not (math.isfinite(var1) and math.isfinite(var2)):
        raise ValueError(f"gaussian_kernel: variances must be positive and finite, got {var1}, {var2}")
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([var1, var2]) @ rot.T
    inv = np.linalg.inv(cov)
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    xx, yy = np.meshgrid(ax, ax)  # xx varies along columns, yy along rows
    q = inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy
    k = np.exp(-0.5 * q)
    return k / k.sum()


def check_kernel(kernel, *, normalize: bool = True) -> np.ndarray:
    """Validate a blur kernel and return it as ``(kh, kw) float64`` summing to 1.

    Raises ``TypeError`` for a non-numeric or complex kernel and ``ValueError`` for: not
    2-D, an even side, NaN/inf, a sum that is not positive (all-zero, or negative: cannot
    be normalised).  Negative entries are allowed (sharpening kernels) as long as the sum
    is positive; any positive scale is fine (the kernel is divided by its sum).
    """
    if isinstance(kernel, torch.Tensor):
        if kernel.is_complex():
            raise TypeError(f"kernel must be real, got dtype {kernel.dtype}")
        kernel = kernel.detach().cpu().double().numpy()
    try:
        k = np.asarray(kernel)
    except (TypeError, ValueError) as e:  # ragged nested lists
        raise TypeError(f"kernel must be a numeric array, got {type(kernel).__name__} ({e})") from e
    if k.dtype.kind == "c":
        raise TypeError("kernel must be real, got complex values")
    try:
        k = k.astype(np.float64)
    except (TypeError, ValueError) as e:  # strings, objects
        raise TypeError(f"kernel must be a numeric array, got dtype {k.dtype} ({e})") from e
    if k.ndim != 2:
        raise ValueError(f"kernel must be 2-D, got shape {k.shape}")
    if k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError(f"kernel sides must be odd, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ValueError("kernel contains NaN or inf")
    a = np.abs(k).sum()
    if not np.isfinite(a):  # huge entries (1e308): the sum overflows; rescale first
        k = k / np.abs(k).max()
        a = np.abs(k).sum()
    s = k.sum()
    # positive, and not a cancellation artefact of large +/- entries
    if not (s > 0 and s > 1e-12 * a):
        what = "it is all zeros" if a == 0 else f"its sum is {s:.4g}"
        raise ValueError(f"kernel cannot be normalised: {what} (the sum must be > 0)")
    return k / s if normalize else k


# ----------------------------------------------------------------------------- imresize
def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


@functools.lru_cache(maxsize=256)
def _contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB ``imresize`` contributions (bicubic, antialiased when shrinking).

    Returns ``weights (out_len, P) float64`` and ``indices (out_len, P) int64`` into the
    input, border handled by symmetric reflection (MATLAB's ``mirror`` padding).
    """
    kernel_width = 4.0
    if scale < 1:
        kernel = lambda x: scale * _cubic(scale * x)  # noqa: E731  (antialiasing)
        kernel_width = kernel_width / scale
    else:
        kernel = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    p = int(math.ceil(kernel_width)) + 2
    ind = left[:, None] + np.arange(p)[None, :] - 1.0  # 0-based
    weights = kernel(u[:, None] - ind - 1.0)
    weights = weights / weights.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    indices = aux[np.mod(ind.astype(np.int64), aux.size)]
    keep = np.any(weights != 0, axis=0)
    return np.ascontiguousarray(weights[:, keep]), np.ascontiguousarray(indices[:, keep])


_DEV_CACHE: dict = {}
_DEV_CACHE_MAX = 256


def _on_device(key, make):
    """Small per-(device, dtype) cache of resize weights/indices and kernels: a pageable
    host-to-device copy blocks the host, and an MZSR call makes 4 of them per resize."""
    t = _DEV_CACHE.get(key)
    if t is None:
        if len(_DEV_CACHE) >= _DEV_CACHE_MAX:
            _DEV_CACHE.clear()
        t = _DEV_CACHE[key] = make()
    return t


def _resize_dim(x: torch.Tensor, dim: int, out_len: int, scale: float) -> torch.Tensor:
    in_len = x.shape[dim]
    if x.device.type == "cpu":
        w, idx = _contributions(in_len, out_len, scale)
        wt, it = torch.as_tensor(w, dtype=x.dtype), torch.as_tensor(idx)
    else:
        def make():
            w, idx = _contributions(in_len, out_len, scale)
            return (torch.as_tensor(w, dtype=x.dtype, device=x.device), torch.as_tensor(idx, device=x.device))

        wt, it = _on_device(("resize", in_len, out_len, scale, str(x.device), x.dtype), make)
    shape = [1] * x.dim()
    shape[dim] = out_len
    out = None
    # Loop over the P taps rather than gathering all at once: the output is at most
    # 2x its own size in memory, whatever P (10 taps when shrinking by 2).
    for p in range(wt.shape[1]):
        term = x.index_select(dim, it[:, p]) * wt[:, p].reshape(shape)
        out = term if out is None else out.add_(term)
    return out


def _resize_tensor(x: torch.Tensor, scale: float | None, out_hw: Sequence[int] | None) -> torch.Tensor:
    """x: (..., H, W) float tensor -> (..., H', W') same dtype."""
    h, w = x.shape[-2], x.shape[-1]
    if out_hw is None:
        if scale is None:
            raise ValueError("imresize: give scale or output_shape")
        sh = sw = float(scale)
        out_hw = (int(math.ceil(h * sh)), int(math.ceil(w * sw)))
    else:
        out_hw = (int(out_hw[0]), int(out_hw[1]))
        sh, sw = out_hw[0] / h, out_hw[1] / w
    if out_hw[0] < 1 or out_hw[1] < 1:
        raise ValueError(f"imresize: output size {out_hw} is empty")
    # MATLAB resizes first along the dimension with the smaller scale (stable sort).
    dims = [(sh, -2, out_hw[0]), (sw, -1, out_hw[1])]
    dims.sort(key=lambda t: t[0])
    for s, d, n in dims:
        x = _resize_dim(x, x.dim() + d, n, s)
    return x


def _round_u8(x: torch.Tensor) -> torch.Tensor:
    # MATLAB round (half away from zero) for the non-negative range, then saturate.
    return torch.floor(x + 0.5).clamp_(0, 255).to(torch.uint8)


def imresize(img, scale: float | None = None, output_shape: Sequence[int] | None = None):
    """MATLAB-compatible bicubic ``imresize`` (antialiased when shrinking).

    img: torch ``(C, H, W)``/``(N, C, H, W)`` or numpy ``(H, W)``/``(H, W, C)``; uint8
    (computed in float64, rounded back to uint8) or float (computed in its own dtype).
    ``scale`` gives ``ceil(size * scale)`` outputs; ``output_shape`` = ``(H', W')``.
    """
    if isinstance(img, np.ndarray):
        if img.ndim not in (2, 3):
            raise ValueError(f"imresize: numpy image must be (H, W) or (H, W, C), got {img.shape}")
        t = torch.from_numpy(np.array(img, copy=True, order="C"))
        t = t.unsqueeze(-1) if img.ndim == 2 else t
        out = imresize(t.permute(2, 0, 1), scale, output_shape).permute(1, 2, 0)
        out = out.squeeze(-1) if img.ndim == 2 else out
        return out.contiguous().numpy()
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"imresize: expected a numpy array or torch tensor, got {type(img).__name__}")
    if img.dim() < 2:
        raise ValueError(f"imresize: tensor must have at least 2 dims, got {tuple(img.shape)}")
    if img.dtype == torch.uint8:
        return _round_u8(_resize_tensor(img.double(), scale, output_shape))
    if not img.is_floating_point():
        raise TypeError(f"imresize: dtype {img.dtype} not supported (uint8 or float)")
    return _resize_tensor(img, scale, output_shape)


# ----------------------------------------------------------------------------- degrade
def _reflect_index(n: int, pad: int, device) -> torch.Tensor:
    """scipy.ndimage 'reflect' (half-sample symmetric, d c b a | a b c d) for any pad."""
    i = torch.arange(-pad, n + pad, device=device)
    m = torch.remainder(i, 2 * n)
    return torch.where(m >= n, 2 * n - 1 - m, m)


def correlate_reflect(x: torch.Tensor, kernel: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-channel 2-D correlation with scipy.ndimage ``mode='reflect'`` semantics.

    x: ``(N, C, H, W)`` float; kernel ``(kh, kw)`` (odd sides).  Same dtype and shape out.
    """
    if isinstance(kernel, torch.Tensor):
        k = kernel.to(device=x.device, dtype=x.dtype)
    elif x.device.type == "cpu":
        k = torch.as_tensor(np.asarray(kernel), dtype=x.dtype)
    else:
        ka = np.ascontiguousarray(kernel, dtype=np.float64)
        k = _on_device(("kernel", ka.shape, ka.tobytes(), str(x.device), x.dtype),
                       lambda: torch.as_tensor(ka, dtype=x.dtype, device=x.device))
    kh, kw = k.shape
    n, c, h, w = x.shape
    ih = _on_device(("reflect", h, kh // 2, str(x.device)), lambda: _reflect_index(h, kh // 2, x.device))
    iw = _on_device(("reflect", w, kw // 2, str(x.device)), lambda: _reflect_index(w, kw // 2, x.device))
    xp = x.index_select(2, ih).index_select(3, iw)
    weight = k.expand(c, 1, kh, kw).contiguous()
    return F.conv2d(xp, weight, groups=c)


def degrade(
    hr,
    kernel=None,
    scale: int = 2,
    subsampling: str = "direct",
    *,
    quantize: bool | None = None,
):
    """The SPEC's degradation: blur with ``kernel`` (scipy 'reflect'), then subsample.

    * ``direct``: ``blurred[0::s, 0::s]``;
    * ``bicubic``: ``imresize(blurred, 1/s)`` (MATLAB antialiased bicubic).

    hr: numpy ``(H, W[, C])`` or torch ``(C, H, W)``/``(N, C, H, W)``; uint8 or float.
    ``kernel=None`` means no blur (plain bicubic downscaling when ``subsampling='bicubic'``).
    uint8 in -> uint8 out (rounded, computed in float64).  Float in -> same float dtype
    out, rounded to the 1/255 grid only if ``quantize=True``.
    """
    if subsampling not in ("direct", "bicubic"):
        raise ValueError(f"subsampling must be 'direct' or 'bicubic', got {subsampling!r}")
    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    if isinstance(hr, np.ndarray):
        if hr.ndim not in (2, 3):
            raise ValueError(f"degrade: numpy image must be (H, W) or (H, W, C), got {hr.shape}")
        t = torch.from_numpy(np.array(hr, copy=True, order="C"))
        t = (t.unsqueeze(-1) if hr.ndim == 2 else t).permute(2, 0, 1)
        out = degrade(t, kernel, scale, subsampling, quantize=quantize).permute(1, 2, 0)
        return (out.squeeze(-1) if hr.ndim == 2 else out).contiguous().numpy()
    if not isinstance(hr, torch.Tensor):
        raise TypeError(f"degrade: expected a numpy array or torch tensor, got {type(hr).__name__}")
    if hr.dim() not in (3, 4):
        raise ValueError(f"degrade: tensor must be (C, H, W) or (N, C, H, W), got {tuple(hr.shape)}")
    batched = hr.dim() == 4
    x = hr if batched else hr.unsqueeze(0)
    is_u8 = x.dtype == torch.uint8
    if not is_u8 and not x.is_floating_point():
        raise TypeError(f"degrade: dtype {x.dtype} not supported (uint8 or float)")
    work = x.double() if is_u8 else x
    if kernel is not None:
        k = check_kernel(kernel)
        work = correlate_reflect(work, k)
    if subsampling == "direct":
        out = work[..., 0::scale, 0::scale]
    else:
        out = _resize_tensor(work, 1.0 / scale, None)
    if is_u8:
        out = _round_u8(out)
    elif quantize:
        out = torch.floor(out * 255.0 + 0.5).clamp_(0, 255) / 255.0
    out = out.contiguous()
    return out if batched else out.squeeze(0)


#: The four x2 test settings of the paper (SPEC section 2): name -> (kernel args, subsampling).
SETTINGS = {
    "g^d_0.2": (dict(size=21, var1=0.2), "direct"),
    "g^d_2.0": (dict(size=21, var1=2.0), "direct"),
    "g^d_ani": (dict(size=15, var1=4.0, var2=1.0, theta=-0.5), "direct"),
    "g^b_1.3": (dict(size=21, var1=1.3), "bicubic"),
}


def setting(name: str) -> tuple[np.ndarray, str]:
    """``(kernel, subsampling)`` of a named test setting (``g^d_2.0`` ...)."""
    if name not in SETTINGS:
        raise ValueError(f"unknown setting {name!r}; choose one of {sorted(SETTINGS)}")
    kw, sub = SETTINGS[name]
    return gaussian_kernel(**kw), sub
