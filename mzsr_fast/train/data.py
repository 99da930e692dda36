"""Training data: HR image folders, random patches, flip/rotation augmentation and the
MZSR task sampler (SPEC section 3).

Everything random here is drawn from a ``numpy.random.Generator`` that the caller derives
from ``(seed, step, task index)`` (:func:`step_rng`).  A batch or a task is therefore a pure
function of those numbers: a resumed run sees exactly the batches it would have seen, and
the ranks of a distributed run can each build their share of the meta-batch without talking.

The LR side is made exactly as at test time (:mod:`mzsr_fast.degradation`)::

    lr  = degrade(hr, kernel, scale, subsampling, quantize=True)   # 8-bit LR as in the test sets
    inp = imresize(lr, output_shape=hr.shape[-2:])                 # network input, HR size

Layouts: images are ``(3, H, W) uint8`` torch tensors; patches and network tensors are
``(N, 3, P, P) float32`` in [0, 1] (NCHW).
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..degradation import degrade, gaussian_kernel, imresize
from ..refine import frame

__all__ = [
    "IMAGE_EXTS",
    "load_folder",
    "step_rng",
    "augment",
    "PatchSampler",
    "TaskSpec",
    "sample_task_spec",
    "make_inputs",
    "Task",
    "sample_task",
    "sample_pretrain_batch",
]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def load_folder(root, *, min_side: int = 0, device="cpu", max_images: int | None = None) -> list[torch.Tensor]:
    """All images under ``root`` (recursively, sorted by path) as ``(3, H, W) uint8``.

    Greyscale is replicated to 3 channels and alpha dropped.  Images with a side below
    ``min_side`` are skipped.  ``ValueError`` if the folder has no usable image.
    """
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"training data folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if max_images:
        files = files[:max_images]

    def _read(p):
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)

    # PIL decoding releases the GIL: a few threads cut the load time on many-core machines
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as ex:
        arrays = list(ex.map(_read, files))
    out = []
    for arr in arrays:
        if min(arr.shape[:2]) < min_side:
            continue
        out.append(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous().to(device))
    if not out:
        raise ValueError(f"no images (>= {min_side} px per side) under {root} (extensions {IMAGE_EXTS})")
    return out


def step_rng(seed: int, step: int, *extra: int) -> np.random.Generator:
    """The generator for one training step (and optionally one task/rank of it)."""
    return np.random.default_rng([int(seed), int(step), *[int(e) for e in extra]])


def augment(x: torch.Tensor, code: int) -> torch.Tensor:
    """One of the 8 flip/rotation variants (the dihedral group) of ``x (..., H, W)``:
    ``code`` in 0..7 = ``rot90`` by ``code % 4`` quarter turns, then a horizontal flip if
    ``code >= 4``.  Code 0 is the identity."""
    if not 0 <= code < 8:
        raise ValueError(f"augmentation code must be in 0..7, got {code}")
    return frame(x, code)


class PatchSampler:
    """Random HR patches from a list of ``(3, H, W) uint8`` images.

    ``flat_threshold``: a candidate patch whose luminance standard deviation (0..255 scale)
    is below it is rejected and redrawn (up to ``max_tries`` times; then the last draw is
    kept), so flat sky/wall patches, which teach nothing about SR, are rare.
    Images are drawn with probability proportional to their area, so every pixel of the
    training set is about equally likely.
    """

    def __init__(self, images: Sequence[torch.Tensor], *, flat_threshold: float = 8.0, max_tries: int = 10):
        if not images:
            raise ValueError("PatchSampler needs at least one image")
        self.images = list(images)
        self.flat_threshold = float(flat_threshold)
        self.max_tries = int(max_tries)
        area = np.array([im.shape[1] * im.shape[2] for im in self.images], dtype=np.float64)
        self.p = area / area.sum()
        self.min_side = int(min(min(im.shape[1:]) for im in self.images))

    @staticmethod
    def _std_y(p: torch.Tensor) -> float:
        y = 0.299 * p[0].float() + 0.587 * p[1].float() + 0.114 * p[2].float()
        return float(y.std())

    def sample(self, rng: np.random.Generator, n: int, size: int, *, augment_: bool = True,
               one_image: bool = False) -> torch.Tensor:
        """``n`` patches -> ``(n, 3, size, size) float32`` in [0, 1] on the images' device.

        ``one_image``: all ``n`` patches come from one image (drawn once, by area), as a
        test-time adaptation sees one image; otherwise each patch draws its own image."""
        if size > self.min_side:
            raise ValueError(f"patch size {size} exceeds the smallest training image side {self.min_side}")
        fixed = self.images[int(rng.choice(len(self.images), p=self.p))] if one_image else None
        out = []
        for _ in range(n):
            for _t in range(self.max_tries):
                im = fixed if fixed is not None else self.images[int(rng.choice(len(self.images), p=self.p))]
                top = int(rng.integers(0, im.shape[1] - size + 1))
                left = int(rng.integers(0, im.shape[2] - size + 1))
                patch = im[:, top : top + size, left : left + size]
                if self.flat_threshold <= 0 or self._std_y(patch) >= self.flat_threshold:
                    break
            code = int(rng.integers(0, 8)) if augment_ else 0
            out.append(augment(patch, code))
        return torch.stack(out).float().div_(255.0)


# ----------------------------------------------------------------------------- tasks
@dataclasses.dataclass
class TaskSpec:
    """One degradation: ``kernel (k, k) float64`` (None = no blur), scale, subsampling,
    noise std (on the [0, 1] scale, added to LR before 8-bit rounding)."""

    kernel: np.ndarray | None
    scale: int
    subsampling: str
    noise: float = 0.0
    kind: str = ""


KERNEL_MIX = {"aniso": 0.6, "iso": 0.25, "narrow": 0.15}


def sample_task_spec(
    rng: np.random.Generator,
    scale: int = 2,
    subsampling: str = "direct",
    *,
    mix: dict | None = None,
    kernel_size: int | None = None,
    noise_max: float = 0.0,
) -> TaskSpec:
    """A random blur kernel per SPEC section 3, widened as issue 6 asks.

    * ``aniso`` (SPEC): 15x15, theta ~ U[0, pi), var1 ~ U[1, 2.5 s], var2 ~ U[1, var1];
    * ``iso``: var ~ U[1, 2.5 s] (the test kernels g^d_2.0, g^b_1.3 are isotropic);
    * ``narrow``: var1 ~ U[0.1, 1], var2 ~ U[0.1, var1], random theta, so that g^d_0.2
      lies inside the training distribution.

    ``mix`` gives the probabilities of the three kinds (default :data:`KERNEL_MIX`).
    ``kernel_size`` defaults to 15 for x2 and 4 s + 7 (23 for x4) so wide x4 kernels are
    not truncated.
    """
    mix = dict(KERNEL_MIX if mix is None else mix)
    kinds = list(mix)
    probs = np.array([mix[k] for k in kinds], dtype=np.float64)
    kind = kinds[int(rng.choice(len(kinds), p=probs / probs.sum()))]
    size = kernel_size or (15 if scale <= 2 else 4 * scale + 7)
    vmax = 2.5 * scale
    theta = float(rng.uniform(0.0, math.pi))
    if kind == "aniso":
        v1 = float(rng.uniform(1.0, vmax))
        v2 = float(rng.uniform(1.0, v1))
    elif kind == "iso":
        v1 = v2 = float(rng.uniform(1.0, vmax))
    elif kind == "narrow":
        v1 = float(rng.uniform(0.1, 1.0))
        v2 = float(rng.uniform(0.1, v1))
    else:
        raise ValueError(f"unknown kernel kind {kind!r}")
    noise = float(rng.uniform(0.0, noise_max)) if noise_max > 0 else 0.0
    return TaskSpec(gaussian_kernel(size, v1, v2, theta), int(scale), subsampling, noise, kind)


def make_lr(hr: torch.Tensor, spec: TaskSpec, rng: np.random.Generator | None = None) -> torch.Tensor:
    """hr ``(N, 3, P, P) float32`` in [0, 1] (P divisible by the scale) -> the 8-bit LR
    ``(N, 3, P/s, P/s)`` made by :func:`mzsr_fast.degrade` with ``spec`` (plus optional
    Gaussian noise, then quantized)."""
    if hr.shape[-2] % spec.scale or hr.shape[-1] % spec.scale:
        raise ValueError(f"patch size {tuple(hr.shape[-2:])} must be divisible by the scale {spec.scale}")
    lr = degrade(hr, spec.kernel, spec.scale, spec.subsampling, quantize=spec.noise <= 0)
    if spec.noise > 0:
        seed = int(rng.integers(0, 2**62)) if rng is not None else 0
        g = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn(lr.shape, generator=g).to(lr.device, lr.dtype) * spec.noise
        lr = torch.floor((lr + noise).clamp(0, 1) * 255.0 + 0.5) / 255.0
    return lr


def make_inputs(hr: torch.Tensor, spec: TaskSpec, rng: np.random.Generator | None = None) -> torch.Tensor:
    """hr ``(N, 3, P, P) float32`` in [0, 1] (P divisible by the scale) -> the network input
    ``imresize(lr, output_shape=(P, P))``, same shape, ``lr`` = :func:`make_lr`."""
    return imresize(make_lr(hr, spec, rng), output_shape=tuple(hr.shape[-2:]))


@dataclasses.dataclass
class Task:
    """One meta-learning task: inner split (x_tr -> y_tr) and outer split (x_te -> y_te),
    ``(n, 3, P, P) float32`` (the inner split ``(n, 3, P/s, P/s)`` with ``inner="son"``);
    ``spec`` its degradation."""

    x_tr: torch.Tensor
    y_tr: torch.Tensor
    x_te: torch.Tensor
    y_te: torch.Tensor
    spec: TaskSpec


def sample_task(
    sampler: PatchSampler,
    rng: np.random.Generator,
    *,
    patch: int = 64,
    n_train: int = 8,
    n_test: int = 8,
    scale: int = 2,
    subsampling: str = "direct",
    mix: dict | None = None,
    noise_max: float = 0.0,
    inner: str = "hr",
    one_image: bool = False,
) -> Task:
    """A task per SPEC section 3: one random kernel, ``n_train + n_test`` augmented HR
    patches degraded with it.

    ``inner="hr"`` (SPEC): D_tr = the first ``n_train`` patches (LR-up -> HR), D_te = the
    other ``n_test``.  ``inner="son"`` (as at meta-test time): all ``n_train + n_test``
    patches in both splits, D_tr = LR-son -> LR (the son made from the 8-bit LR with the
    same kernel, bicubic-up to LR size; targets the LR), D_te = LR-up -> HR: the inner
    steps see only what a test image offers, the outer loss is that image's SR.
    ``one_image``: the task's patches all come from one training image (its contrast and
    texture, not an average over images, set the size of the inner step, as at test time)."""
    if inner not in ("hr", "son"):
        raise ValueError(f"inner must be 'hr' or 'son', got {inner!r}")
    spec = sample_task_spec(rng, scale, subsampling, mix=mix, noise_max=noise_max)
    hr = sampler.sample(rng, n_train + n_test, patch, one_image=one_image)
    if inner == "hr":
        x = make_inputs(hr, spec, rng)
        return Task(x[:n_train], hr[:n_train], x[n_train:], hr[n_train:], spec)
    lr = make_lr(hr, spec, rng)
    x_te = imresize(lr, output_shape=tuple(hr.shape[-2:]))
    return Task(make_inputs(lr, spec, rng), lr, x_te, hr, spec)


def sample_pretrain_batch(
    sampler: PatchSampler, rng: np.random.Generator, *, batch: int = 16, patch: int = 64, scale: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pretraining ("transfer") batch: bicubic x``scale`` without blur.
    Returns ``(inp, hr)``, both ``(batch, 3, patch, patch) float32``."""
    hr = sampler.sample(rng, batch, patch)
    spec = TaskSpec(None, scale, "bicubic", 0.0, "bicubic")
    return make_inputs(hr, spec), hr
