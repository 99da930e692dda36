"""PSNR and SSIM on the Y channel of MATLAB's YCbCr (SPEC section 4), as the paper.

Inputs: ``(H, W, 3)`` uint8 RGB numpy arrays (float arrays in [0, 1] are rounded to uint8
first, as the paper rounds SR outputs), or ``(H, W)`` Y/greyscale arrays in 0..255.
The GT is mod-cropped to the SR size if larger; ``shave`` pixels are cut from each border.
"""
from __future__ import annotations

import numpy as np

__all__ = ["rgb_to_y", "psnr_y", "ssim_y", "to_uint8"]


def to_uint8(img) -> np.ndarray:
    try:
        import torch

        if isinstance(img, torch.Tensor):
            t = img.detach().cpu()
            if t.dim() == 4:
                t = t[0]
            img = t.permute(1, 2, 0).numpy() if t.dim() == 3 else t.numpy()
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(img, np.ndarray):
        img = np.asarray(img)  # PIL
    if img.dtype == np.uint8:
        return img
    if img.dtype.kind == "f":
        return np.floor(np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise TypeError(f"expected uint8 or float image, got {img.dtype}")


def rgb_to_y(img) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` Y channel, float64 in 16..235; greyscale passes through."""
    a = to_uint8(img).astype(np.float64)
    if a.ndim == 2:
        return a
    if a.ndim == 3 and a.shape[2] == 1:
        return a[..., 0]
    return 16.0 + (65.481 * a[..., 0] + 128.553 * a[..., 1] + 24.966 * a[..., 2]) / 255.0


def _prep(sr, hr, shave: int):
    ys, yh = rgb_to_y(sr), rgb_to_y(hr)
    h, w = ys.shape
    if yh.shape[0] < h or yh.shape[1] < w:
        raise ValueError(f"GT {yh.shape} is smaller than SR {ys.shape}")
    yh = yh[:h, :w]  # mod-crop of the GT to the SR size
    if shave:
        ys, yh = ys[shave:-shave, shave:-shave], yh[shave:-shave, shave:-shave]
    return ys, yh


def psnr_y(sr, hr, shave: int = 2) -> float:
    """PSNR (dB, peak 255) on Y, SR rounded to uint8, ``shave`` border pixels removed."""
    ys, yh = _prep(sr, hr, shave)
    mse = np.mean((ys - yh) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def _gauss(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    ax = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(ax**2) / (2 * sigma * sigma))
    k = np.outer(g, g)
    return k / k.sum()


def _filter_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    from scipy.signal import correlate2d

    return correlate2d(x, k, mode="valid")


def ssim_y(sr, hr, shave: int = 2) -> float:
    """SSIM on Y (Wang et al. 2004 / MATLAB ``ssim_index``): Gaussian window 11, sigma 1.5,
    K1 = 0.01, K2 = 0.03, L = 255, 'valid' filtering, mean of the SSIM map."""
    ys, yh = _prep(sr, hr, shave)
    k = _gauss()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = _filter_valid(ys, k), _filter_valid(yh, k)
    s11 = _filter_valid(ys * ys, k) - mu1 * mu1
    s22 = _filter_valid(yh * yh, k) - mu2 * mu2
    s12 = _filter_valid(ys * yh, k) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 * mu1 + mu2 * mu2 + c1) * (s11 + s22 + c2))
    return float(m.mean())
