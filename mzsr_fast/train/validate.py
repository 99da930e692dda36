"""Validation during training: MZSR(n) PSNR on Set5 (or any HR folder) for one test
setting, through the public API exactly as users call it::

    sr = adapt_and_upscale(lr, scale=s, kernel=k, steps=n, subsampling=sub,
                           weights=params_dict, backend="reference")
    psnr = metrics.psnr_y(sr, hr)

The LR images are made with :func:`mzsr_fast.degrade` from the mod-cropped uint8 HR
(bit-exact with the official ``set5_g20`` LR images for g^d_2.0).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from .. import metrics
from ..api import adapt_and_upscale
from ..degradation import degrade, gaussian_kernel, imresize

__all__ = ["SETTINGS", "ValSet", "load_valset", "validate"]

#: name -> (kernel args for gaussian_kernel (size, var1, var2, theta), subsampling); SPEC section 2
SETTINGS = {
    "g02": ((21, 0.2, 0.2, 0.0), "direct"),
    "g20": ((21, 2.0, 2.0, 0.0), "direct"),
    "gani": ((15, 4.0, 1.0, -0.5), "direct"),
    "b13": ((21, 1.3, 1.3, 0.0), "bicubic"),
}


class ValSet:
    """``items``: list of ``(name, lr (h, w, 3) uint8, hr (s h, s w, 3) uint8)``."""

    def __init__(self, items, kernel: np.ndarray, scale: int, subsampling: str, setting: str):
        self.items, self.kernel, self.scale, self.subsampling, self.setting = items, kernel, scale, subsampling, setting

    def __len__(self):
        return len(self.items)


def load_valset(folder, setting: str = "g20", scale: int = 2, limit: int | None = None) -> ValSet:
    from PIL import Image

    if setting not in SETTINGS:
        raise ValueError(f"unknown validation setting {setting!r}; choose from {sorted(SETTINGS)}")
    kargs, sub = SETTINGS[setting]
    k = gaussian_kernel(*kargs)
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".bmp", ".jpg"))
    if not files:
        raise ValueError(f"no validation images in {folder}")
    items = []
    for p in files[:limit]:
        with Image.open(p) as im:
            hr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        h, w = hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale
        hr = np.ascontiguousarray(hr[:h, :w])
        lr = degrade(hr, k, scale, sub)
        items.append((p.stem, lr, hr))
    return ValSet(items, k, scale, sub, setting)


def validate(
    params: Mapping[str, torch.Tensor],
    valset: ValSet,
    steps: Sequence[int] = (1, 10),
    *,
    device=None,
    backend: str = "reference",
    lr_schedule=None,
    per_image: bool = False,
) -> dict:
    """Mean Y-PSNR (dB) over ``valset`` for each number of adaptation steps in ``steps``
    (0 = no adaptation), plus ``bicubic``; ``shave = scale`` border pixels as ``mzsr-fast eval``.
    Keys ``psnr_{n}``, ``bicubic``, ``val_time`` (floats); with ``per_image`` also
    ``images``: ``{name: {"psnr_{n}": dB}}`` (one image, e.g. Set5 butterfly, can move the mean
    by a dB)."""
    t0 = time.perf_counter()
    dev = torch.device(device) if device is not None else next(iter(params.values())).device
    p = {k: v.detach().to(dev, torch.float32) for k, v in params.items()}
    res: dict[str, float] = {}
    bic = []
    for _, lr, hr in valset.items:
        up = imresize(lr, output_shape=hr.shape[:2])
        bic.append(metrics.psnr_y(up, hr, valset.scale))
    res["bicubic"] = float(np.mean(bic))
    images: dict[str, dict[str, float]] = {name: {} for name, _, _ in valset.items}
    for n in steps:
        vals = []
        for name, lr, hr in valset.items:
            sr = adapt_and_upscale(
                lr, scale=valset.scale, kernel=valset.kernel, steps=int(n), subsampling=valset.subsampling,
                weights=p, backend=backend, device=dev, lr_schedule=lr_schedule,
            )
            vals.append(metrics.psnr_y(sr, hr, valset.scale))
            images[name][f"psnr_{n}"] = round(float(vals[-1]), 3)
        res[f"psnr_{n}"] = float(np.mean(vals))
    res["val_time"] = time.perf_counter() - t0
    if per_image:
        res["images"] = images
    return res


def best_keys(metric: str, val_steps: Sequence[int]) -> list[str]:
    """The validation keys whose sum selects ``best.safetensors``: ``metric`` is one key
    (``psnr_10``) or a sum (``psnr_1+psnr_10``).  The default ``psnr_10`` falls back to the
    last validated step count when 10 is not validated; any other missing key is an error."""
    have = {f"psnr_{n}" for n in val_steps} | {"bicubic"}
    parts = [p.strip() for p in str(metric).split("+") if p.strip()]
    if parts and all(p in have for p in parts):
        return parts
    if metric == "psnr_10" and val_steps:
        return [f"psnr_{val_steps[-1]}"]
    raise SystemExit(f"--best-metric {metric!r}: validated keys are {sorted(have)} (join with '+' to sum)")


def validation_setup(args, setting: str, main: bool = True) -> tuple[ValSet | None, list[int]]:
    """``(valset or None, val_steps)`` of a training run: the validation set is loaded on the
    main rank when ``--val-every`` and ``--val-data`` are set, and a bad ``--best-metric``
    fails here, before any training, not at the first validation."""
    val_steps = [int(s) for s in str(args.val_steps).split(",") if s.strip()]
    if not (main and args.val_every and args.val_data):
        return None, val_steps
    valset = load_valset(args.val_data, setting, args.scale, args.val_limit)
    best_keys(args.best_metric, val_steps)
    return valset, val_steps


def validation_round(params, valset: ValSet, val_steps: Sequence[int], *, step: int, device, args, out: Path,
                     best: dict, log, bar, prefix: str, train_time_s: float, meta: dict) -> dict:
    """One validation during training, shared by pretraining and meta-training: validate
    with ``args.val_backend``, log a ``val`` record, print one line, export
    ``best.safetensors`` when the ``--best-metric`` sum improves (and, with
    ``--keep-val-snapshots``, ``val_step{step}.safetensors`` every time).  Returns the new
    ``best`` record."""
    from .common import export_weights

    res = validate({k: v.detach() for k, v in params.items()}, valset, val_steps, device=device,
                   backend=args.val_backend, per_image=True)
    images = res.pop("images")
    log.log(kind="val", step=step, time=train_time_s, setting=valset.setting, **res, images=images)
    bar.write(f"[{prefix}] step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()))
    keys = best_keys(args.best_metric, val_steps)
    key = "+".join(keys)
    score = sum(res[k] for k in keys)
    wmeta = dict(steps=step, train_time_s=round(train_time_s, 1), val_setting=valset.setting,
                 **{f"val_{k}": round(v, 3) for k, v in res.items()}, **meta)
    if args.keep_val_snapshots:
        export_weights(out / f"val_step{step}.safetensors", params, **wmeta)
    if score > best.get("score", best.get(key, -1e9)):
        best = {**res, "step": step, "key": key, "score": score}
        export_weights(out / "best.safetensors", params, **wmeta)
    return best
