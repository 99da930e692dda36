"""Vanilla ZSSR (Shocher, Cohen, Irani, CVPR 2018): the baseline MZSR is measured against.

A faithful port of the official code's defaults (``assafshocher/ZSSR``, ``configs.py``,
``ZSSR.py``, ``utils.py``; SPEC section 6), with one deliberate difference: the son is
made by *our* degradation (:func:`mzsr_fast.degrade`) instead of the official shifted
kernel, so that ZSSR and MZSR see exactly the same LR model.

* Network: 8 conv 3x3 layers, width 64, **no bias**, ReLU after 1..7, residual on the
  bicubic-upsampled input; weights ~ N(0, 0.1 / (9 C_in)) (not truncated).
* Training, per iteration: one father = a 128x128 crop of a random augmentation of the
  LR image (5% crop only; 45% rot90 multiple + mirror + integer crop; ~50% affine:
  scale U[0.5, 1], scale difference N(0, 0.25), any rotation, shear N(0, 0.1), mirror;
  sampled with cubic interpolation, zero outside the image, as ``cv2.warpPerspective``);
  son = ``degrade(father, k, s)`` (+ optional Gaussian noise, clipped to [0, 1]);
  input = ``imresize(son, father size)``; L1 loss; Adam, batch 1.
* Learning-rate policy: every 50 iterations the reconstruction MSE of
  ``net(imresize(degrade(LR)))`` against LR is measured; every 60 iterations, once more
  than 256 iterations passed since the last change, a line is fitted to the last 5
  measurements and the lr is divided by 10 if ``-1.5 * slope < std(slope)``; training
  stops when lr < 9e-6 or after 3000 iterations.
* Inference: geometric self-ensemble over 8 rot90 x mirror frames, each output
  back-projected 10 times, the per-pixel median, back-projected 10 more times.
  Back-projection: ``y = clip(y + imresize(LR - degrade(y, k, s), y size), 0, 1)``.

**Alignment.**  Direct subsampling (``blurred[0::s, 0::s]``, a kernel given) is not
symmetric under flips: in a frame where an image axis is reversed, the LR samples the
(reversed) HR at ``s*i + s - 1`` instead of ``s*i``.  The net learns the ``[0::s]`` grid
(its sons are made with it in every augmented frame), so in such a frame its output is
``s - 1`` HR pixels off; :func:`self_ensemble` shifts it back before undoing the frame
(:func:`frame_shift`).  The official code avoids the problem by shifting the kernel (centre
of mass + ``0.5 * (s - size % 2)``), i.e. a different sampling grid from ours; run as-is on
our inputs it lands one HR pixel off.  MATLAB bicubic subsampling (no kernel, or
``subsampling="bicubic"``) is symmetric and needs no shift.

Other documented choices: the lr policy's slope std is computed as the numpy of the
official code's time did (``np.polyfit(cov=True)`` scaled the covariance by
``resid / (M - 4)`` for a line before numpy 1.16; ``lr_fit_dof="modern"`` gives today's
``resid / (M - 2)``); the warp quantises nothing (OpenCV rounds source coordinates to
1/32 pixel); the small difference between TF's and torch's Adam epsilon placement is kept
as torch's.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import chain
from . import io as _io
from .degradation import degrade, imresize
# inference (back-projection, the 8-frame self-ensemble) lives in mzsr_fast.refine, shared with
# MZSR's quality options; ZSSR keeps its own names for them
from .refine import _down, _reversed_axes, back_projection, frame_shift, self_ensemble  # noqa: F401
from .refine import frame as _frame, median0 as _median0, shift as _shift, unframe as _unframe  # noqa: F401

__all__ = [
    "ZSSRConfig",
    "zssr_upscale",
    "init_zssr_params",
    "zssr_forward",
    "random_augment",
    "augment_matrix",
    "lr_policy",
    "slope_and_std",
    "back_projection",
    "self_ensemble",
    "frame_shift",
    "register",
]


# ----------------------------------------------------------------------------- config
@dataclasses.dataclass
class ZSSRConfig:
    """Every ZSSR setting; the defaults are the official ``Config`` (x2, one jump)."""

    # network
    width: int = 64
    depth: int = 8
    init_variance: float = 0.1  # weights ~ N(0, init_variance / (9 * C_in))
    learn_residual: bool = True
    # training
    max_iters: int = 3000
    min_iters: int = 256  # iterations that must pass after an lr change before the next
    learning_rate: float = 1e-3
    min_learning_rate: float = 9e-6  # stop once the lr falls below this
    crop_size: int = 128
    noise_std: float = 0.0  # Gaussian noise added to sons (real images: 0.0125)
    # learning-rate policy
    run_test: bool = True
    run_test_every: int = 50  # reconstruction MSE measured every this many iterations
    learning_rate_change_ratio: float = 1.5
    learning_rate_policy_check_every: int = 60
    learning_rate_slope_range: int = 256  # the fit uses the last range // run_test_every points
    lr_fit_dof: str = "legacy"  # "legacy": numpy < 1.16 polyfit covariance (M - 4); "modern": M - 2
    # augmentation
    augment_leave_as_is_probability: float = 0.05
    augment_no_interpolate_probability: float = 0.45
    augment_min_scale: float = 0.5
    augment_scale_diff_sigma: float = 0.25
    augment_shear_sigma: float = 0.1
    augment_allow_rotation: bool = True  # also enables mirroring (as the official code)
    # inference
    output_flip: bool = True  # 8-frame geometric self-ensemble
    back_projection_iters: int = 10
    ensemble_align: bool = True  # shift outputs of axis-reversed frames back (direct subsampling)
    # degradation of sons (kernel given); no kernel always means MATLAB bicubic
    subsampling: str = "direct"

    def __post_init__(self):
        ints = dict(width=1, depth=2, max_iters=0, min_iters=0, crop_size=2, run_test_every=1,
                    learning_rate_policy_check_every=1, learning_rate_slope_range=1, back_projection_iters=0)
        for name, lo in ints.items():
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise ValueError(f"ZSSRConfig.{name} must be an int >= {lo}, got {v!r}")
        for name in ("init_variance", "learning_rate", "min_learning_rate", "noise_std",
                     "augment_scale_diff_sigma", "augment_shear_sigma", "learning_rate_change_ratio"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"ZSSRConfig.{name} must be a finite number >= 0, got {v!r}")
        p0, p1 = self.augment_leave_as_is_probability, self.augment_no_interpolate_probability
        if not (0 <= p0 <= 1 and 0 <= p1 <= 1 and p0 + p1 <= 1):
            raise ValueError(f"augmentation probabilities must lie in [0, 1] and sum to <= 1, got {p0}, {p1}")
        if not 0 < self.augment_min_scale <= 1:
            raise ValueError(f"ZSSRConfig.augment_min_scale must lie in (0, 1], got {self.augment_min_scale}")
        if self.lr_fit_dof not in ("legacy", "modern"):
            raise ValueError(f"ZSSRConfig.lr_fit_dof must be 'legacy' or 'modern', got {self.lr_fit_dof!r}")
        if self.subsampling not in ("direct", "bicubic"):
            raise ValueError(f"ZSSRConfig.subsampling must be 'direct' or 'bicubic', got {self.subsampling!r}")

    @classmethod
    def given_kernel(cls, **kw) -> "ZSSRConfig":
        """Official ``X2_GIVEN_KERNEL_CONF``: no self-ensemble, no rotation/mirror
        augmentation (the kernel may be non-symmetric), 2 back-projection rounds."""
        base = dict(output_flip=False, augment_allow_rotation=False, back_projection_iters=2)
        base.update(kw)
        return cls(**base)

    @classmethod
    def real_image(cls, **kw) -> "ZSSRConfig":
        """Official ``X2_REAL_CONF``: kernel + mild unknown noise: noise 0.0125 on sons, no
        self-ensemble, no back-projection, no rotation, no scale difference or shear,
        minimum augmentation scale 0.75."""
        base = dict(output_flip=False, back_projection_iters=0, noise_std=0.0125, augment_allow_rotation=False,
                    augment_scale_diff_sigma=0.0, augment_shear_sigma=0.0, augment_min_scale=0.75)
        base.update(kw)
        return cls(**base)

    PRESETS = ("default", "given_kernel", "real_image")

    @classmethod
    def preset(cls, name: str, **kw) -> "ZSSRConfig":
        if name == "default":
            return cls(**kw)
        if name == "given_kernel":
            return cls.given_kernel(**kw)
        if name == "real_image":
            return cls.real_image(**kw)
        raise ValueError(f"unknown ZSSR preset {name!r}; choose one of {cls.PRESETS}")


# ----------------------------------------------------------------------------- network
def init_zssr_params(cfg: ZSSRConfig, seed: int = 0, device=None) -> list[torch.Tensor]:
    """Bias-free weights ``[(Cout, Cin, 3, 3) float32] * depth``, N(0, var / (9 Cin)).

    With the default width/depth/variance these are exactly
    ``model.init_params(seed, bias=False, init="zssr")`` (same generator order).
    """
    g = torch.Generator().manual_seed(int(seed))
    chans = [3] + [cfg.width] * (cfg.depth - 1) + [3]
    ws = []
    for ci, co in zip(chans[:-1], chans[1:]):
        w = torch.randn(co, ci, 3, 3, generator=g) * math.sqrt(cfg.init_variance / (9 * ci))
        ws.append(w.to(device))
    return ws


def zssr_forward(weights: Sequence[torch.Tensor], x: torch.Tensor, learn_residual: bool = True) -> torch.Tensor:
    """x: ``(N, 3, H, W)`` float32 (bicubic-upsampled) -> ``(N, 3, H, W)``: ``x + net(x)``
    (:func:`mzsr_fast.chain.forward`, bias-free, any depth; differentiable)."""
    return chain.forward(chain.NCHW, [t for w in weights for t in (w, None)], x, residual=learn_residual)


# ----------------------------------------------------------------------------- augmentation
def augment_matrix(rng: np.random.Generator, shape_hw: tuple[int, int], cfg: ZSSRConfig) -> np.ndarray:
    """The official ``random_augment`` transform (3x3, float64) for an image of ``shape_hw``
    mapping source (x = column, y = row) to crop coordinates; draws from ``rng`` in the
    official order (chooser, scale, [scale_diff], [reflect], shift_x, shift_y, [theta],
    [shear_x, shear_y])."""
    h, w = shape_hw
    crop = cfg.crop_size
    p0, p1 = cfg.augment_leave_as_is_probability, cfg.augment_no_interpolate_probability
    chooser = rng.random()
    if chooser < p0:
        mode = "leave_as_is"
    elif p0 < chooser < p0 + p1:
        mode = "no_interp"
    else:
        mode = "affine"
    max_scale, min_scale = 1.0, cfg.augment_min_scale  # one jump: the only source is the input
    scale = 1.0 if mode == "leave_as_is" else rng.random() * (max_scale - min_scale) + min_scale
    to_center = np.array([[1, 0, -w / 2.0], [0, 1, -h / 2.0], [0, 0, 1]])
    from_center = np.array([[1, 0, w / 2.0], [0, 1, h / 2.0], [0, 0, 1]])
    if mode != "affine":  # integer shifts keep the transform interpolation-free
        to_center, from_center = np.round(to_center), np.round(from_center)
    if mode == "affine":
        scale_diff = rng.standard_normal() * cfg.augment_scale_diff_sigma
    else:
        scale, scale_diff = 1.0, 0.0
    reflect = 1.0 if (mode == "leave_as_is" or not cfg.augment_allow_rotation) else float(np.sign(rng.standard_normal()))
    scale_mat = np.array([[reflect * (scale + scale_diff / 2), 0, 0], [0, scale - scale_diff / 2, 0], [0, 0, 1]])
    shift_x = rng.random() * np.clip(scale * w - crop, 0, 9999)
    shift_y = rng.random() * np.clip(scale * h - crop, 0, 9999)
    shift_mat = np.array([[1, 0, -shift_x], [0, 1, -shift_y], [0, 0, 1]])
    if mode != "affine":
        shift_mat = np.round(shift_mat)
    if mode == "affine":
        theta = rng.random() * 2 * math.pi
    elif mode == "no_interp":
        theta = int(rng.integers(4)) * math.pi / 2
    else:
        theta = 0.0
    if not cfg.augment_allow_rotation:
        theta = 0.0
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])
    if mode == "affine":
        shear_x = rng.standard_normal() * cfg.augment_shear_sigma
        shear_y = rng.standard_normal() * cfg.augment_shear_sigma
    else:
        shear_x = shear_y = 0.0
    shear = np.array([[1, shear_x, 0], [shear_y, 1, 0], [0, 0, 1]])
    return from_center @ shift_mat @ shear @ rot @ scale_mat @ to_center


def warp(img: torch.Tensor, mat: np.ndarray, out_hw: tuple[int, int]) -> torch.Tensor:
    """``cv2.warpPerspective(img, mat, out, INTER_CUBIC)`` with a zero border, clipped.

    img: ``(1, C, H, W)`` float32 (H, W >= 2); mat maps source (x, y, 1) to output pixels.
    Bicubic with a = -0.75 (OpenCV's and torch's ``grid_sample``), pixel centres at integers.
    """
    h, w = img.shape[-2:]
    oh, ow = out_hw
    inv = np.linalg.inv(mat)
    ys, xs = np.meshgrid(np.arange(oh, dtype=np.float64), np.arange(ow, dtype=np.float64), indexing="ij")
    pts = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    src = inv @ pts
    sx, sy = src[0] / src[2], src[1] / src[2]
    grid = np.stack([2.0 * sx / (w - 1) - 1.0, 2.0 * sy / (h - 1) - 1.0], axis=-1).reshape(1, oh, ow, 2)
    g = torch.as_tensor(grid, dtype=img.dtype, device=img.device)
    return F.grid_sample(img, g, mode="bicubic", padding_mode="zeros", align_corners=True).clamp_(0, 1)


def random_augment(img: torch.Tensor, rng: np.random.Generator, cfg: ZSSRConfig) -> torch.Tensor:
    """One hr-father: ``(1, 3, H, W)`` -> ``(1, 3, crop, crop)`` float32 in [0, 1]."""
    mat = augment_matrix(rng, tuple(img.shape[-2:]), cfg)
    return warp(img, mat, (cfg.crop_size, cfg.crop_size))


# ----------------------------------------------------------------------------- lr policy
def slope_and_std(x: Sequence[float], y: Sequence[float], dof: str = "legacy") -> tuple[float, float]:
    """Least-squares line through ``(x, y)``: ``(slope, std of the slope)`` as
    ``np.polyfit(x, y, 1, cov=True)``; ``dof="legacy"`` scales the covariance by
    ``resid / (M - 4)`` (numpy < 1.16, the official code's), ``"modern"`` by ``resid / (M - 2)``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = x.size
    xm = x - x.mean()
    sxx = float(np.sum(xm * xm))
    slope = float(np.sum(xm * (y - y.mean())) / sxx)
    resid = y - (y.mean() + slope * xm)
    denom = m - 4 if dof == "legacy" else m - 2
    if denom <= 0:
        raise ValueError(f"need more than {4 if dof == 'legacy' else 2} points to scale the covariance, got {m}")
    var = float(np.sum(resid * resid)) / denom / sxx
    return slope, math.sqrt(var)


def lr_policy(it: int, lr: float, mse_steps: Sequence[int], mse_rec: Sequence[float], last_change: int,
              cfg: ZSSRConfig) -> float:
    """The official ``learning_rate_policy`` after iteration ``it`` (0-based): the new lr.

    Acts when ``(it + 1) % check_every == 0`` and ``it - last_change > min_iters``: fits a
    line to the last ``slope_range // run_test_every`` reconstruction MSEs and divides the
    lr by 10 when ``-ratio * slope < std`` (no clear downward trend).
    """
    if (1 + it) % cfg.learning_rate_policy_check_every or it - last_change <= cfg.min_iters:
        return lr
    n = cfg.learning_rate_slope_range // cfg.run_test_every
    need = 5 if cfg.lr_fit_dof == "legacy" else 3
    if n < need or len(mse_rec) < need:
        return lr
    slope, std = slope_and_std(mse_steps[-n:], mse_rec[-n:], cfg.lr_fit_dof)
    if -cfg.learning_rate_change_ratio * slope < std:
        return lr / 10.0
    return lr


# ----------------------------------------------------------------------------- inference

# ----------------------------------------------------------------------------- training
class _Trainer:
    def __init__(self, lr_img: torch.Tensor, kernel, scale: int, cfg: ZSSRConfig, seed: int):
        self.lr_img, self.kernel, self.scale, self.cfg = lr_img, kernel, scale, cfg
        self.sub = cfg.subsampling if kernel is not None else "bicubic"
        self.rng = np.random.default_rng(seed)
        self.noise_gen = torch.Generator().manual_seed(int(seed) + 1)
        self.weights = [w.requires_grad_() for w in init_zssr_params(cfg, seed, lr_img.device)]
        self.opt = torch.optim.Adam(self.weights, lr=cfg.learning_rate)
        self.lr = cfg.learning_rate
        self.mse_steps: list[int] = []
        self.mse_rec: list[float] = []
        self.lr_changes: list[int] = [0]
        self.losses: list[float] = []

    def father_to_son(self, father: torch.Tensor) -> torch.Tensor:
        son = _down(father, self.kernel, self.scale, self.sub)
        if self.cfg.noise_std > 0:
            son = son + torch.randn(son.shape, generator=self.noise_gen).to(son.device) * self.cfg.noise_std
        return son.clamp(0, 1)

    def net(self, x: torch.Tensor) -> torch.Tensor:
        return zssr_forward(self.weights, x, self.cfg.learn_residual)

    @torch.no_grad()
    def predict(self, lr: torch.Tensor) -> torch.Tensor:
        """LR ``(1, 3, h, w)`` -> ``clip(net(imresize(lr, s)))`` ``(1, 3, s h, s w)``."""
        up = imresize(lr, output_shape=(lr.shape[-2] * self.scale, lr.shape[-1] * self.scale))
        return self.net(up).clamp_(0, 1)

    @torch.no_grad()
    def quick_test(self, it: int) -> None:
        son = self.father_to_son(self.lr_img)
        rec = self.net(imresize(son, output_shape=tuple(self.lr_img.shape[-2:]))).clamp_(0, 1)
        self.mse_rec.append(float(torch.mean((self.lr_img - rec) ** 2)))
        self.mse_steps.append(it)

    def train(self, pbar=None) -> int:
        cfg = self.cfg
        it = -1
        for it in range(cfg.max_iters):
            father = random_augment(self.lr_img, self.rng, cfg)
            son = self.father_to_son(father)
            x = imresize(son, output_shape=tuple(father.shape[-2:]))
            loss = (self.net(x) - father).abs().mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.losses.append(loss.detach())  # a tensor: no device sync per iteration
            if cfg.run_test and it % cfg.run_test_every == 0:
                self.quick_test(it)
            new_lr = lr_policy(it, self.lr, self.mse_steps, self.mse_rec, self.lr_changes[-1], cfg)
            if new_lr != self.lr:
                self.lr = new_lr
                self.lr_changes.append(it)
                for g in self.opt.param_groups:
                    g["lr"] = new_lr
            if pbar is not None:
                pbar.update(1)
                if it % 20 == 0:
                    rec = f"{self.mse_rec[-1]:.2e}" if self.mse_rec else "-"
                    pbar.set_postfix_str(f"lr={self.lr:.0e}, loss={float(self.losses[-1]):.4f}, rec_mse={rec}")
            if self.lr < cfg.min_learning_rate:
                break
        self.losses = torch.stack(self.losses).tolist() if self.losses else []
        return it + 1


def zssr_upscale(
    image,
    scale: int = 2,
    kernel=None,
    config: ZSSRConfig | None = None,
    device=None,
    progress=None,
    seed: int | None = None,
    return_info: bool = False,
):
    """Train a ZSSR network on ``image`` alone and upscale it by ``scale``.

    Args:
        image: the same kinds as :func:`mzsr_fast.adapt_and_upscale` (numpy ``(H, W[, C])``
            uint8/uint16/float in [0, 1], ``PIL.Image``, torch ``(C, H, W)``/``(N, C, H, W)``
            float in [0, 1] or uint8); the result has the same kind, ``scale`` times larger.
            A batch trains one network per image.
        scale: integer factor >= 2.
        kernel: blur kernel (array, tensor, ``.mat`` key ``kernel`` or ``.npy`` path): sons
            are ``degrade(father, kernel, scale, config.subsampling)``; ``None``: MATLAB
            bicubic downscaling.
        config: a :class:`ZSSRConfig` (default: the official defaults).
        device: ``None`` (cuda if available), ``"cpu"``, ``"cuda"``...
        progress: bars over the training iterations and the ensemble frames
            (:mod:`mzsr_fast.progress`: ``None`` = only when stderr is a terminal, ``False``,
            ``True``, or a ``callback(done, total, desc)`` with desc ``"ZSSR train"`` /
            ``"ZSSR ensemble"``; training may stop before ``max_iters``).
        seed: seeds the initialisation, augmentation and noise (``None``: a random seed,
            reported in the info).
        return_info: also return a dict (iterations, lr changes, reconstruction MSEs, times).
    """
    from .api import resolve_device

    t0 = time.perf_counter()
    if not isinstance(scale, (int, np.integer)) or isinstance(scale, bool) or scale < 2:
        raise ValueError(f"scale must be an int >= 2, got {scale!r}")
    cfg = ZSSRConfig() if config is None else config
    if not isinstance(cfg, ZSSRConfig):
        raise TypeError(f"config must be a ZSSRConfig, got {type(cfg).__name__}")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))
    elif not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an int >= 0 or None, got {seed!r}")
    dev = resolve_device(device)
    k = _io.load_kernel(kernel)
    xs, meta = _io.to_internal(image, dev)
    h, w = xs[0].shape[-2:]
    if min(h, w) < max(scale, 2):
        raise ValueError(f"image of {h}x{w} pixels is too small for scale {scale}")
    if k is not None and (k.shape[0] > h or k.shape[1] > w):
        raise ValueError(f"kernel of shape {k.shape} is larger than the {h}x{w} image")
    sub = cfg.subsampling if k is not None else "bicubic"

    from .progress import check_progress, make_progress

    check_progress(progress)
    outs, infos = [], []
    times = {"train": 0.0, "ensemble": 0.0}
    for i, x in enumerate(xs):
        tr = _Trainer(x, k, scale, cfg, seed + i)
        t1 = time.perf_counter()
        with make_progress(cfg.max_iters, "ZSSR train", progress) as pb:
            iters = tr.train(pb)
        t2 = time.perf_counter()
        n_frames = 8 if cfg.output_flip else 1
        with make_progress(n_frames, "ZSSR ensemble", progress, unit="frame") as pb:
            sr = self_ensemble(tr.predict, x, scale, k, sub, flips=cfg.output_flip,
                               bp_iters=cfg.back_projection_iters, align=cfg.ensemble_align, progress=pb)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t3 = time.perf_counter()
        times["train"] += t2 - t1
        times["ensemble"] += t3 - t2
        outs.append(sr)
        infos.append({"iterations": iters, "lr_changes": tr.lr_changes[1:], "final_lr": tr.lr,
                      "mse_steps": tr.mse_steps, "mse_rec": tr.mse_rec, "seed": seed + i})
    result = _io.from_internal(outs, meta)
    if not return_info:
        return result
    times["total"] = time.perf_counter() - t0
    info = dict(infos[0]) if len(infos) == 1 else {"per_image": infos}
    info.update(times=times, device=str(dev), subsampling=sub, config=dataclasses.asdict(cfg))
    return result, info


# ----------------------------------------------------------------------------- CLI
def _cmd_zssr(a) -> int:
    from . import metrics

    inp, out = Path(a.input), Path(a.output)
    # every output check before minutes of training (the same ones save_image repeats)
    _io.check_output_path(out, force=a.force, protect=(inp, a.hr, a.kernel))
    over = {}
    if a.max_iters is not None:
        over["max_iters"] = a.max_iters
    if a.subsampling is not None:
        over["subsampling"] = a.subsampling
    cfg = ZSSRConfig.preset(a.preset, **over)
    img = _io.load_image(inp)
    t0 = time.perf_counter()
    sr, info = zssr_upscale(img, scale=a.scale, kernel=a.kernel, config=cfg, device=a.device,
                            progress=False if a.quiet else None, seed=a.seed, return_info=True)
    dt = time.perf_counter() - t0
    _io.save_image(sr, out, force=a.force, protect=(inp, a.hr, a.kernel))
    t = info["times"]
    print(f"{inp.name}: {img.size[0]}x{img.size[1]} -> {sr.size[0]}x{sr.size[1]} in {dt:.2f} s "
          f"(train {t['train']:.2f} s, {info['iterations']} iterations, lr changes at {info['lr_changes']}; "
          f"ensemble + back-projection {t['ensemble']:.2f} s) on {info['device']}, seed {info['seed']}")
    if a.hr:
        hr = _io.load_hr_image(a.hr, a.scale)
        srr = np.asarray(sr.convert("RGB"))
        bic = imresize(np.asarray(img.convert("RGB")), a.scale)
        print(f"PSNR/SSIM (Y, shave {a.scale}): ZSSR {metrics.psnr_y(srr, hr, a.scale):.2f} dB / "
              f"{metrics.ssim_y(srr, hr, a.scale):.4f}   bicubic {metrics.psnr_y(bic, hr, a.scale):.2f} dB / "
              f"{metrics.ssim_y(bic, hr, a.scale):.4f}")
    print(f"wrote {out}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``zssr`` subcommand to an ``argparse`` subparsers object."""
    z = subparsers.add_parser("zssr", help="vanilla ZSSR baseline: train on the image alone, upscale it")
    z.add_argument("input")
    z.add_argument("output")
    z.add_argument("--kernel", default=None, help=".mat (key 'kernel') or .npy blur kernel; none = bicubic")
    z.add_argument("--scale", type=int, default=2, help="upscaling factor (default 2)")
    z.add_argument("--max-iters", type=int, default=None, help="iteration cap (default 3000)")
    z.add_argument("--preset", default="default", choices=ZSSRConfig.PRESETS,
                   help="official configs: default (ensemble + 10 back-projections), given_kernel, real_image")
    z.add_argument("--subsampling", default=None, choices=["direct", "bicubic"],
                   help="how sons are made when a kernel is given (default direct)")
    z.add_argument("--hr", default=None, help="ground truth: print PSNR/SSIM against it")
    z.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available)")
    z.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    z.add_argument("--quiet", action="store_true", help="no progress bar")
    z.add_argument("--force", action="store_true", help="overwrite an existing output")
    z.set_defaults(func=_cmd_zssr)
    return z


def main(argv=None) -> int:
    import sys

    p = argparse.ArgumentParser(prog="python -m mzsr_fast.zssr")
    sub = p.add_subparsers(dest="cmd", required=True)
    register(sub)
    a = p.parse_args(["zssr"] + list(sys.argv[1:] if argv is None else argv))
    try:
        return int(a.func(a) or 0)
    except (ValueError, TypeError) as e:
        print(f"zssr: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
