"""The runner: each image of a call through one pass, as the plan says::

    make inputs (prep)  ->  adapt: whole (backend.adapt) / tiles / crops  ->  upscale: whole / tiles

Tiles and crops are exact (:mod:`mzsr_fast.tiles`): each step sums the masked gradients
(``backend.grads(x, target, box, numel)``) of the regions and applies one SGD update
(``backend.apply_grads``); a tiled upscale makes ``lr_up`` per tile
(:func:`mzsr_fast.prep.upsampled_region`) and writes the output in place.

:func:`upscale` takes the adapted backend and the LR image; :func:`refine` then applies the
test-time options to its output: the 8-frame self-ensemble (each frame upscaled by the same
adapted backend) and back-projection with the image's own degradation
(:mod:`mzsr_fast.refine`).
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from . import prep
from .degradation import imresize
from .plan import Plan
from .progress import ProgressArg, make_progress
from .refine import back_project, self_ensemble
from .tiles import Tile, make_tile, region_shape, tiles

__all__ = ["run", "adapt", "adapt_tiled", "adapt_on_crops", "upscale", "refine", "tiled_forward"]


# ----------------------------------------------------------------------------- adaptation
def _accumulate(acc: dict | None, g: dict) -> dict:
    if acc is None:
        return {k: v.clone() for k, v in g.items()}
    for k, v in g.items():
        acc[k].add_(v)
    return acc


def _tiled_step(be, x: torch.Tensor, target: torch.Tensor, regions: Sequence[Tile], numel: int, lr: float,
                batch: int = 1, bar=None):
    """One SGD step from the masked gradients of ``regions`` (equal shapes) summed; ``batch``
    regions go through ``be.grads`` at once (x must then be a single image)."""
    loss, acc = None, None
    for i in range(0, len(regions), batch):
        group = regions[i:i + batch]
        if len(group) == 1:
            t = group[0]
            xs, ts, box = x[(..., *t.region)], target[(..., *t.region)], t.box
        else:
            xs = torch.cat([x[(..., *t.region)] for t in group])
            ts = torch.cat([target[(..., *t.region)] for t in group])
            box = [t.box for t in group]
        li, g = be.grads(xs, ts, box, numel)
        acc = _accumulate(acc, g)
        loss = li if loss is None else loss + li
        del g, xs, ts
        if bar is not None:
            bar.update(len(group))
    be.apply_grads(acc, lr)
    return loss


def _stack(losses) -> torch.Tensor:
    if not losses:
        return torch.zeros(0)
    return torch.stack([v.reshape(()).float().cpu() for v in losses])


def adapt_tiled(be, x: torch.Tensor, target: torch.Tensor, schedule: Sequence[float], tile,
                progress: ProgressArg = False) -> torch.Tensor:
    """``len(schedule)`` SGD steps of ``mean|x + net(x) - target|``, each from the exact
    per-tile gradients summed; x, target ``(N, 3, h, w)`` float32.  Returns the losses
    ``(k,)`` float32 (each before its step).  Progress: one unit per tile and step."""
    regions = tiles(x.shape[-2], x.shape[-1], tile)
    with make_progress(len(schedule) * len(regions), "adapt (tiles)", progress, unit="tile") as bar:
        return _stack([_tiled_step(be, x, target, regions, target.numel(), float(lr), bar=bar) for lr in schedule])


def adapt_on_crops(be, x: torch.Tensor, target: torch.Tensor, schedule: Sequence[float], *,
                   crop_size: int, n_crops: int, seed: int = 0, batch: int | None = None,
                   progress: ProgressArg = False) -> torch.Tensor:
    """Adaptation on a random sample of crops instead of the whole image (large images).

    Each step draws ``n_crops`` crops of ``crop_size`` x ``crop_size`` LR pixels (clipped to
    the image) at uniform random positions (``torch.Generator`` seeded with ``seed``: the
    same crops for the same call), and takes one SGD step on the L1 loss averaged over the
    crops' pixels.  Each crop is computed with its halo, so its gradient is the full-image
    network's gradient restricted to the crop (no artificial zero padding at crop edges);
    the step is an unbiased-in-the-interior estimate of the full-image step.  ``batch``
    crops (default: all) go through ``be.grads`` at once (one call of larger ops, not
    many small ones).  x, target ``(1, 3, h, w)``.  Returns the losses ``(k,)`` float32
    (crop losses, each before its step).  Progress: one unit per step."""
    if x.shape[0] != 1:
        raise ValueError(f"adapt_on_crops takes one image (1, 3, h, w), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    ch, cw = min(crop_size, h), min(crop_size, w)
    gen = torch.Generator().manual_seed(int(seed))
    numel = n_crops * x.shape[0] * x.shape[1] * ch * cw
    rshape = region_shape(h, w, ch, cw)
    losses = []
    with make_progress(len(schedule), "adapt (crops)", progress, unit="step") as bar:
        for lr in schedule:
            ys = torch.randint(0, h - ch + 1, (n_crops,), generator=gen).tolist()
            xs = torch.randint(0, w - cw + 1, (n_crops,), generator=gen).tolist()
            regions = [make_tile(y, y + ch, x0, x0 + cw, h, w, rshape) for y, x0 in zip(ys, xs)]
            losses.append(_tiled_step(be, x, target, regions, numel, float(lr), batch=batch or n_crops))
            bar.update(1)
    return _stack(losses)


def adapt(be, x: torch.Tensor, target: torch.Tensor, schedule: Sequence[float], plan: Plan, *,
          crop_size: int = 128, n_crops: int = 16, seed: int = 0, progress: ProgressArg = False) -> torch.Tensor:
    """The adaptation as ``plan`` says: on a sample of crops, exact tiles, or the whole image
    (``be.adapt``, no progress); the ``(k,)`` losses."""
    if plan.adapt_mode == "crops":
        return adapt_on_crops(be, x, target, schedule, crop_size=crop_size, n_crops=n_crops, seed=seed,
                              batch=plan.adapt_batch, progress=progress)
    if plan.adapt_tile is None or len(schedule) == 0:
        return be.adapt(x, target, schedule)
    return adapt_tiled(be, x, target, schedule, plan.adapt_tile, progress)


# ----------------------------------------------------------------------------- upscale
def tiled_forward(be, x: torch.Tensor, tile) -> torch.Tensor:
    """``be.upscale(x)`` (the backend's forward) computed tile by tile;
    x ``(N, 3, H, W)`` float32 -> the same shape."""
    h, w = x.shape[-2:]
    out = torch.empty_like(x)
    for t in tiles(h, w, tile):
        y = be.upscale(x[(..., *t.region)])
        by0, by1, bx0, bx1 = t.box
        out[(..., *t.interior)] = y[..., by0:by1, bx0:bx1]
    return out


def upscale(be, lr: torch.Tensor, scale: int, tile=None, lr_up: torch.Tensor | None = None,
            progress: ProgressArg = False) -> torch.Tensor:
    """``clamp(be.upscale(imresize(lr, scale)), 0, 1)``; lr ``(N, 3, h, w)`` float32 ->
    ``(N, 3, scale*h, scale*w)``.  ``tile`` (output pixels, int or pair): the forward and
    the bicubic upsampling run per tile and the output is written in place (progress: one
    unit per tile); None: whole (``lr_up``: the upsampled input if already made)."""
    h, w = lr.shape[-2:]
    H, W = h * scale, w * scale
    if tile is None:
        return be.upscale(imresize(lr, output_shape=(H, W)) if lr_up is None else lr_up).clamp(0, 1)
    out = torch.empty(lr.shape[:-2] + (H, W), dtype=torch.float32, device=lr.device)
    regions = tiles(H, W, tile)
    with make_progress(len(regions), "upscale (tiles)", progress, unit="tile") as bar:
        for t in regions:
            y = be.upscale(prep.upsampled_region(lr, scale, t.ry0, t.ry1, t.rx0, t.rx1))
            by0, by1, bx0, bx1 = t.box
            out[(..., *t.interior)] = y[..., by0:by1, bx0:bx1].clamp_(0, 1)
            del y
            bar.update(1)
    return out


# ----------------------------------------------------------------------------- refine
def refine(be, lr: torch.Tensor, sr: torch.Tensor, kernel: np.ndarray | None, scale: int, subsampling: str, *,
           tile=None, ensemble: bool = False, back_projection: int = 0, progress: ProgressArg = False) -> torch.Tensor:
    """The test-time options on an upscale ``sr`` of ``lr`` (``(1, 3, h, w)`` /
    ``(1, 3, s h, s w)`` float32 in [0, 1]): with ``ensemble``, the per-pixel median of the
    8 rot90 x mirror frames (each upscaled by the adapted ``be``, ``tile`` as the upscale;
    direct subsampling's frame shift undone; ``sr`` is frame 0), then ``back_projection``
    rounds of ``sr += imresize(lr - degrade(sr))`` with the image's own kernel and
    subsampling (bicubic when ``kernel`` is None).  Returns a new tensor (``sr`` itself
    when both are off).  Progress: one unit per frame, shown for a tiled upscale only."""
    if ensemble:
        with make_progress(8, "ensemble", progress if tile is not None else False, unit="frame") as bar:
            sr = self_ensemble(lambda f: upscale(be, f, scale, tile=tile), lr, scale, kernel, subsampling,
                               bp_iters=0, first=sr, progress=bar)
    return back_project(sr, lr, kernel, scale, subsampling, back_projection)  # kernel None: bicubic


# ----------------------------------------------------------------------------- one call
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(be, params: dict, xs: Sequence[torch.Tensor], kernel: np.ndarray | None, scale: int, subsampling: str,
        schedule: Sequence[float], plan: Plan, *, crop_size: int = 128, n_crops: int = 16, crop_seed: int = 0,
        lr_search: bool = False, timed: bool = False, progress: ProgressArg = None, ensemble: bool = False,
        back_projection: int = 0) -> dict:
    """Each LR image ``x`` of ``xs`` (``(1, 3, h, w)`` float32 on the device) through one pass:
    inputs -> ``be.prepare(params)`` -> adaptation (``schedule``; with ``lr_search`` the
    first step's rate is chosen between ``schedule[0]`` and half of it by the training-pair
    loss after that step) -> upscale -> :func:`refine` (``ensemble``, ``back_projection``).

    Returns ``{"outs": [sr (1, 3, sh, sw) in [0, 1]], "losses": [(k,) losses], "searches":
    [...], "times": {phase: s}}``.  ``timed``: sync the device at each phase boundary so
    the times are per phase (otherwise the whole pass is queued with no sync)."""
    sync = _sync if timed else (lambda d: None)
    crops = dict(crop_size=crop_size, n_crops=n_crops, seed=crop_seed, progress=progress)
    steps = len(schedule)
    outs, all_losses, searches = [], [], []
    times = {"degrade": 0.0, "prepare": 0.0, "adapt": 0.0, "upscale": 0.0, "refine": 0.0}
    for x in xs:
        dev = x.device
        t = time.perf_counter()
        if plan.upscale_tile is None:
            son_up, lr_up = prep.make_inputs(x, kernel, scale, subsampling)
        else:  # large image: lr_up is made per tile; the son only when adapting
            son_up = prep.son_up(x, kernel, scale, subsampling) if steps else None
            lr_up = None
        sync(dev)
        t1 = time.perf_counter()
        be.prepare(params, tuple(x.shape))
        sync(dev)
        t2 = time.perf_counter()
        img_sched = list(schedule)
        if steps and lr_search:
            # trial first steps from the same start; the loss of the step after (lr 0) is the
            # training-pair loss each one reached
            trials = []
            for c in (schedule[0], schedule[0] / 2):
                trials.append((float(adapt(be, son_up, x, [c, 0.0], plan, **crops)[1]), c))
                be.prepare(params, tuple(x.shape))
            img_sched = [min(trials)[1]] + list(schedule[1:])
            searches.append({"candidates": [c for _, c in trials], "losses": [v for v, _ in trials],
                             "chosen": img_sched[0]})
        losses = adapt(be, son_up, x, img_sched, plan, **crops) if steps else torch.zeros(0)
        del son_up
        sync(dev)
        t3 = time.perf_counter()
        sr = upscale(be, x, scale, tile=plan.upscale_tile, lr_up=lr_up, progress=progress)  # clamped to [0, 1]
        del lr_up
        sync(dev)
        t35 = time.perf_counter()
        sr = refine(be, x, sr, kernel, scale, subsampling, tile=plan.upscale_tile, ensemble=ensemble,
                    back_projection=back_projection, progress=progress)
        if plan.tiled:  # a large image: the backend's kept scratch would sit under the conversion
            be.release_workspace()
        sync(dev)
        t4 = time.perf_counter()
        for k, v in (("degrade", t1 - t), ("prepare", t2 - t1), ("adapt", t3 - t2), ("upscale", t35 - t3),
                     ("refine", t4 - t35)):
            times[k] += v
        outs.append(sr)
        all_losses.append(losses)
    return {"outs": outs, "losses": all_losses, "searches": searches, "times": times}
