"""Blind kernel estimation: ``estimate_kernel(lr)`` -> a Gaussian blur kernel for the image.

The estimate is chosen by the meta-learned network itself (docs/kernel_estimation.md).  For a
candidate kernel ``k`` (a Gaussian, :func:`mzsr_fast.degradation.gaussian_kernel`), on a few
textured crops of the LR image:

1. the son is made with the exact degradation, ``degrade(lr, k, s, subsampling)``, resized
   back to the LR size (the adaptation input, as :func:`mzsr_fast.prep.son_up`);
2. the network adapts for ``steps`` SGD steps on son -> LR (the weights' own schedule);
3. the adapted net upscales the LR crop, and the SR is degraded again with ``k``: the score is
   the *cycle* error ``mean |degrade(SR, k) - LR|`` on the crop's interior.

A kernel too narrow leaves the SR blurry, one too wide makes it ring; both show in the cycle
error (runs/kernel_estimate_2026-12-04, exp1: the training-pair loss alone is biased toward
narrow kernels, the cycle error much less).  The search is coarse-to-fine over isotropic
Gaussians: a ladder of six variances, then twice the vertex of a parabola in log-variance,
each candidate scored once (cached).  Isotropic only: the cycle error scores the true
g^d_ani kernel *worse* than the isotropic one of the same determinant, while MZSR(10) with
the true anisotropic kernel gains only 0.2-0.3 dB over that isotropic one (exp3 in the runs
folder), so an anisotropic search costs evaluations for nothing it can find.

Kernels are sampled on this project's grid (centred at ``(size - 1) / 2``, SPEC section 2),
so they plug into ``degrade`` / ``adapt_and_upscale(kernel=...)`` with no shift (KernelGAN's
kernels are shifted for another sampling grid; see SPEC's alignment warning).

Also here: :func:`random_kernels`, the seeded random anisotropic setting of the evaluation,
and :func:`kernel_error`.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch

from . import io as _io
from . import kernel_net as _kn
from . import model as _model
from . import options as _options
from .degradation import check_kernel, degrade, gaussian_kernel, imresize

__all__ = ["estimate_kernel", "random_kernels", "random_kernel_params", "kernel_error", "KERNEL_SIZE", "METHODS"]

#: side of the estimated kernels (odd; wide enough for var 6 at 3 sigma: 2 * 3 * 2.45 + 1)
KERNEL_SIZE = 15

#: isotropic variances of the first stage (HR pixels^2)
_LADDER = (0.2, 0.6, 1.2, 2.0, 3.0, 4.5)
#: parabola refinements after the ladder
_REFINE = 2
#: (a, b) of the calibration log(var) = a log(raw estimate) + b, fitted on training images
#: (runs/kernel_estimate_2026-12-04/exp5_calibration.json); (1, 0) = none
_CALIBRATION = (0.996, 0.158)
#: smallest crop side (LR pixels) scored
_MIN_CROP = 64
#: bounds of the variances searched
_VMIN, _VMAX = 0.1, 8.0
#: estimation methods (estimate_kernel's ``method``)
METHODS = ("auto", "net", "search")
#: the kernel predictor reads images up to this many LR pixels whole, larger ones by crops
_NET_MAX_PIXELS = 640 * 640
_NET_CROP, _NET_CROPS = 320, 6


# ----------------------------------------------------------------------------- random kernels
def random_kernel_params(n: int, seed: int = 0, scale: int = 2) -> list[dict]:
    """``n`` seeded random anisotropic Gaussians (the meta-training distribution, SPEC 3):
    ``theta ~ U[0, pi)``, ``var1 ~ U[1, 2.5 s]``, ``var2 ~ U[1, var1]``; list of
    ``dict(var1, var2, theta)`` (floats).  Same ``(n, seed, scale)``, same list."""
    rng = np.random.default_rng(int(seed))
    out = []
    for _ in range(int(n)):
        theta = float(rng.uniform(0.0, math.pi))
        var1 = float(rng.uniform(1.0, 2.5 * scale))
        var2 = float(rng.uniform(1.0, var1))
        out.append(dict(var1=var1, var2=var2, theta=theta))
    return out


def random_kernels(n: int = 20, seed: int = 0, scale: int = 2, size: int = KERNEL_SIZE) -> list[np.ndarray]:
    """The kernels of :func:`random_kernel_params`: ``(size, size)`` float64, sum 1."""
    return [gaussian_kernel(size, **p) for p in random_kernel_params(n, seed, scale)]


def kernel_error(est: np.ndarray, true: np.ndarray) -> float:
    """Relative L2 error ``||est - true|| / ||true||`` after centring both on the larger of
    the two grids (zero padding); a kernel error of 0 is the same kernel."""
    a, b = np.asarray(est, np.float64), np.asarray(true, np.float64)
    n = max(a.shape[0], b.shape[0], a.shape[1], b.shape[1])

    def pad(k):
        py, px = (n - k.shape[0]) // 2, (n - k.shape[1]) // 2
        return np.pad(k / k.sum(), ((py, n - k.shape[0] - py), (px, n - k.shape[1] - px)))

    a, b = pad(a), pad(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ----------------------------------------------------------------------------- scoring
def _lr_tensor(lr, device) -> torch.Tensor:
    """The LR image as ``(1, 3, h, w)`` float32 in [0, 1]: a tensor already in that layout is
    used as is; anything else goes through the API's conversion (:func:`mzsr_fast.io.to_internal`)."""
    if isinstance(lr, torch.Tensor) and lr.dim() == 4 and lr.shape[:2] == (1, 3) and lr.dtype == torch.float32:
        if not torch.isfinite(lr).all() or lr.min() < 0 or lr.max() > 1:
            raise ValueError("lr must hold finite values in [0, 1]")
        return lr.to(device).contiguous()  # a permuted view would run other conv kernels (other rounding)
    xs, _ = _io.to_internal(lr, device)
    if len(xs) != 1:
        raise ValueError(f"estimate_kernel takes one image, got a batch of {len(xs)}")
    return xs[0]


def _crop_boxes(x: torch.Tensor, size: int, n: int, seed: int) -> list[tuple[int, int]]:
    """Top-left corners of ``n`` crops of ``size`` x ``size``, drawn (seeded) with a probability
    proportional to the local gradient energy (flat regions say nothing about the blur;
    KernelGAN samples its crops the same way)."""
    h, w = x.shape[-2:]
    if size >= h and size >= w:
        return [(0, 0)]
    ch, cw = min(size, h), min(size, w)
    y = x[0].mean(0)
    g = torch.zeros_like(y)
    g[:, 1:] += (y[:, 1:] - y[:, :-1]).abs()
    g[1:, :] += (y[1:, :] - y[:-1, :]).abs()
    # energy of each crop position: box sum over the crop (integral image)
    ii = torch.nn.functional.pad(g.double().cumsum(0).cumsum(1), (1, 0, 1, 0))
    e = ii[ch:, cw:] - ii[:-ch, cw:] - ii[ch:, :-cw] + ii[:-ch, :-cw]
    p = (e.flatten() + 1e-12) ** 2
    gen = torch.Generator().manual_seed(int(seed))
    picks = torch.multinomial(p / p.sum(), n, replacement=n > p.numel(), generator=gen).tolist()
    return [(i // e.shape[1], i % e.shape[1]) for i in picks]


class _Scorer:
    """Scores candidate kernels on fixed crops; caches by rounded parameters."""

    def __init__(self, be, params, x, scale, subsampling, schedule, boxes, crop):
        self.be, self.params, self.x, self.s, self.sub = be, params, x, scale, subsampling
        self.schedule, self.boxes, self.crop = schedule, boxes, crop
        self.cache: dict = {}
        self.evals = 0
        h, w = x.shape[-2:]
        self.ch, self.cw = min(crop, h), min(crop, w)
        self.lr_c = torch.cat([x[..., y:y + self.ch, x0:x0 + self.cw] for y, x0 in boxes])
        self.lr_up = imresize(self.lr_c, output_shape=(self.ch * scale, self.cw * scale))

    def key(self, v1, v2, th):
        v1, v2 = max(v1, v2), min(v1, v2)
        th = 0.0 if abs(v1 - v2) < 1e-3 * v1 else th % math.pi
        return (round(math.log(v1), 3), round(math.log(v2), 3), round(th, 3))

    def __call__(self, v1: float, v2: float, th: float) -> float:
        v1 = float(min(max(v1, _VMIN), _VMAX))
        v2 = float(min(max(v2, _VMIN), _VMAX))
        key = self.key(v1, v2, th)
        if key in self.cache:
            return self.cache[key][0]
        k = gaussian_kernel(KERNEL_SIZE, v1, v2, th)
        s, sub, x = self.s, self.sub, self.x
        son = degrade(x, k, s, sub)  # the whole image: crops see no artificial border
        son_up = imresize(son, output_shape=tuple(x.shape[-2:]))
        son_c = torch.cat([son_up[..., y:y + self.ch, x0:x0 + self.cw] for y, x0 in self.boxes])
        self.be.prepare(self.params, tuple(son_c.shape))
        losses = self.be.adapt(son_c, self.lr_c, self.schedule)
        sr = self.be.upscale(self.lr_up).clamp(0, 1)
        back = degrade(sr, k, s, sub)
        m = KERNEL_SIZE // (2 * s) + 3  # LR pixels touched by the crop's border
        d = (back - self.lr_c)[..., m:self.ch - m, m:self.cw - m] if min(self.ch, self.cw) > 4 * m else back - self.lr_c
        score = float(d.abs().mean())
        self.cache[key] = (score, dict(var1=max(v1, v2), var2=min(v1, v2), theta=key[2], cycle=score,
                                       train_loss=float(losses[-1]) if len(losses) else None))
        self.evals += 1
        return score

    def best(self):
        key = min(self.cache, key=lambda q: self.cache[q][0])
        return self.cache[key][1]


def _parabola_min(xs, ys) -> float:
    """Vertex of the parabola through three points (x of the middle one if degenerate)."""
    (x0, x1, x2), (y0, y1, y2) = xs, ys
    den = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / den if den else 0.0
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / den if den else 0.0
    if a <= 0:
        return x1
    return min(max(-b / (2 * a), min(xs)), max(xs))


# ----------------------------------------------------------------------------- public
def estimate_kernel(
    lr,
    scale: int = 2,
    subsampling: str = "direct",
    *,
    method: str = "auto",
    weights=None,
    backend: str = "auto",
    device=None,
    seed: int = 0,
    budget: float = 1.5,
    steps: int = 3,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[np.ndarray, dict]:
    """Estimate the blur kernel of the LR image ``lr`` (blind, from the image alone).

    Args:
        lr: ``(1, 3, h, w)`` float32 tensor in [0, 1] (the internal layout), or any image
            :func:`mzsr_fast.adapt_and_upscale` takes (e.g. ``(h, w, 3)`` uint8 numpy).
        scale, subsampling: the degradation the kernel is for (as ``adapt_and_upscale``).
        method: ``"net"``: the kernel predictor (:mod:`mzsr_fast.kernel_net`, one forward pass,
            anisotropic Gaussians) of ``weights/kernelnet_x<scale>_<subsampling>.safetensors``;
            ``"search"``: the cycle-error search over isotropic Gaussians scored by the
            meta-learned network (below); ``"auto"`` (default): ``"net"`` where a predictor is
            shipped for the setting, else ``"search"``.
        weights, backend, device: as ``adapt_and_upscale`` (``"search"``: the same meta-learned
            network scores the candidates; ``None`` weights = the shipped ones for ``(scale,
            subsampling)``; ``"net"`` reads neither ``weights`` nor ``backend``).
        seed: seeds the choice of crops; the same seed (and image, options) gives the same
            kernel.
        budget: cost cap as a multiple of one ``adapt_and_upscale(steps=10)`` call on the
            same image (counted in network pixel-steps; the crop size follows from it).
        steps: adaptation steps per candidate (the weights' first ``steps`` learning rates);
            fewer (down to 1) where the budget would otherwise make the crops smaller than
            64 x 64 LR pixels.
        progress: ``callable(done, total, desc)`` after each scored candidate, or None.

    Returns:
        ``(kernel, info)``: kernel ``(15, 15)`` float64 summing to 1, centred on the grid of
        :func:`mzsr_fast.degradation.gaussian_kernel`; info: ``var1``, ``var2``, ``theta``
        (the Gaussian's parameters), ``evals`` (candidates scored), ``crop`` (side),
        ``crops`` (their corners), ``time`` (s), ``cost`` (estimated pixel-steps relative to
        ``steps=10``), ``candidates`` (every scored one, with its cycle error; ``[]`` for
        ``"net"``), ``method``.

    Raises:
        ValueError / TypeError naming the bad option or image.
    """
    t0 = time.perf_counter()
    if not isinstance(budget, (int, float)) or isinstance(budget, bool) or not math.isfinite(budget) or budget <= 0:
        raise ValueError(f"budget must be a positive number (a multiple of one steps=10 call), got {budget!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if progress is not None and not callable(progress):
        raise ValueError(f"progress must be None or callable(done, total, desc), got {type(progress).__name__}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    opts = _options.Options(scale=scale, steps=10, subsampling=subsampling, backend=backend, device=device)
    x = _lr_tensor(lr, opts.device)
    h, w = x.shape[-2:]
    if min(h, w) < 4 * scale:
        raise ValueError(f"image of {h}x{w} pixels is too small to estimate a kernel at scale {scale}")
    net_file = _kn.weights_path(scale, subsampling)
    if method == "net" and not net_file.is_file():
        raise ValueError(f"no kernel predictor for x{scale} {subsampling} ({net_file.name} is not shipped): "
                         f"use method='search'")
    if method == "net" or (method == "auto" and net_file.is_file()):
        return _estimate_net(x, net_file, scale, opts.device, seed, progress, t0)
    params, wdesc = _options.load_params(weights, scale, subsampling)
    params = _options.params_on(params, wdesc, opts.device)
    sched = _options.schedule(None, steps, _options.recommended_schedule(wdesc))
    be = _options.backend_instance(backend, opts.device, "fp32")

    n_evals = len(_LADDER) + _REFINE
    # cost model (network pixel-steps; a forward pixel ~ 1/3 of a step's): steps=10 on the
    # image = 10 h w + a forward at s^2 h w; one candidate = `steps` steps + a forward at s^2
    # on the crops.  Crops under _MIN_CROP^2 pixels score noisily (exp4), so on small images
    # the steps per candidate go down (to 1) before the crop does.
    ref = (10 + scale * scale / 3) * h * w
    floor = min(_MIN_CROP, h) * min(_MIN_CROP, w)

    def crop_area(st):
        return budget * ref / (n_evals * (st + scale * scale / 3 + 1 / 3))

    while steps > 1 and crop_area(steps) < floor:
        steps -= 1
    area = crop_area(steps)
    per_px = steps + scale * scale / 3 + 1 / 3
    sched = sched[:steps]
    n_crops = 1 if area >= h * w else max(1, min(4, int(area // (_MIN_CROP * _MIN_CROP))))
    crop = int(min(max(h, w), max(_MIN_CROP, math.sqrt(area / n_crops))))
    boxes = _crop_boxes(x, crop, n_crops, seed)
    sc = _Scorer(be, params, x, scale, subsampling, sched, boxes, crop)

    def tick(desc):
        if progress is not None:
            progress(sc.evals, n_evals, desc)

    # an isotropic ladder, then twice the vertex of the parabola (in log-variance) through the
    # best scored candidate and its two neighbours
    for v in _LADDER:
        sc(v, v, 0.0)
        tick("isotropic")
    for _ in range(_REFINE):
        pts = sorted((math.log(c[1]["var1"]), c[0]) for c in sc.cache.values())
        i = int(np.argmin([y for _, y in pts]))
        if i == 0 or i == len(pts) - 1:  # at the edge of the range: step outward
            lv = pts[i][0] + (-0.4 if i == 0 else 0.4)
        else:
            lv = _parabola_min([p[0] for p in pts[i - 1:i + 2]], [p[1] for p in pts[i - 1:i + 2]])
        sc(math.exp(lv), math.exp(lv), 0.0)
        tick("refine")
    b = sc.best()
    raw = b["var1"]
    a_, b_ = _CALIBRATION
    var = float(min(max(math.exp(a_ * math.log(raw) + b_), _VMIN), _VMAX))
    b = dict(b, var1=var, var2=var)
    kernel = gaussian_kernel(KERNEL_SIZE, var, var, 0.0)
    kernel = check_kernel(kernel)
    used = sc.evals * per_px * len(boxes) * sc.ch * sc.cw
    info = dict(raw_var=raw, var1=b["var1"], var2=b["var2"], theta=b["theta"], evals=sc.evals, crop=crop,
                crops=[list(p) for p in boxes], steps=steps, time=time.perf_counter() - t0,
                cost=used / ref, weights=wdesc, backend=be.name,
                candidates=[c[1] for c in sc.cache.values()], method="search")
    return kernel, info


def _estimate_net(x: torch.Tensor, path, scale: int, device, seed: int, progress, t0: float):
    """``method="net"``: one pass of the kernel predictor over the image (or, above
    ``_NET_MAX_PIXELS``, over up to ``_NET_CROPS`` seeded textured crops of ``_NET_CROP``)."""
    net = _kn.load(path, device)
    h, w = x.shape[-2:]
    boxes, crop = None, 0
    if h * w > _NET_MAX_PIXELS:
        crop = _NET_CROP
        boxes = _crop_boxes(x, crop, _NET_CROPS, seed)
    L = _kn.predict(net, x, boxes, crop, tta=True)
    p = _kn.logcov_to_params(L)
    v1 = float(min(max(p["var1"], _VMIN), _VMAX))
    v2 = float(min(max(p["var2"], _VMIN), _VMAX))
    kernel = check_kernel(gaussian_kernel(KERNEL_SIZE, v1, v2, p["theta"]))
    if progress is not None:
        progress(1, 1, "kernel net")
    # cost in the units of the search's (network pixel-steps against steps=10 on the image):
    # the predictor's multiply-adds per LR pixel over those of one adaptation step (~3 forwards
    # of the SR network) and the final upscale
    px = (len(boxes) * crop * crop) if boxes else h * w
    sr_macs = _model.flops_per_pixel() // 2  # one forward of the SR network
    cost = px * _kn.macs_per_pixel(net) / (h * w * sr_macs * (3 * 10 + scale * scale))
    info = dict(raw_var=v1, var1=v1, var2=v2, theta=p["theta"], logcov=[float(v) for v in L], evals=1,
                crop=crop or max(h, w), crops=[list(b) for b in boxes] if boxes else [[0, 0]], steps=0,
                time=time.perf_counter() - t0, cost=cost, weights=str(path.name), backend="torch",
                candidates=[], method="net")
    return kernel, info
