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
from ..kernel_eval import load_hr
from ..degradation import degrade, gaussian_kernel, imresize

__all__ = ["SETTINGS", "ValSet", "ValSuite", "load_valset", "load_suite", "validate", "validate_suite"]

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
    if setting not in SETTINGS:
        raise ValueError(f"unknown validation setting {setting!r}; choose from {sorted(SETTINGS)}")
    kargs, sub = SETTINGS[setting]
    k = gaussian_kernel(*kargs)
    items = [(stem, degrade(hr, k, scale, sub), hr) for stem, hr in load_hr(folder, scale, limit)]
    return ValSet(items, k, scale, sub, setting)


class ValSuite:
    """Several ``(set, setting)`` cells validated together; ``cells``: list of
    ``(name, ValSet)`` with ``name = "set5:g20"``.  :func:`validate_suite` reports each
    cell and the means over all cells, which select the best snapshot (issue 15: a single
    Set5 setting moves by +-0.7 dB between neighbouring snapshots)."""

    def __init__(self, cells):
        self.cells = list(cells)
        self.setting = "suite:" + ",".join(n for n, _ in self.cells)

    def __len__(self):
        return sum(len(v) for _, v in self.cells)


#: issue 15's selection rule: Set5 and Set14, the three direct settings
DEFAULT_SUITE = "set5:g02,set5:g20,set5:gani,set14:g02,set14:g20,set14:gani"


def parse_suite(spec: str, root) -> list[tuple[str, Path, str]]:
    """``"set5:g20,set14:gani"`` -> ``[(name, folder, setting)]``; a set is a folder path or a
    folder name under ``root``.  ``ValueError`` naming the bad part."""
    out = []
    for part in (p.strip() for p in str(spec).split(",")):
        if not part:
            continue
        if ":" not in part:
            raise ValueError(f"validation suite cell {part!r} must be SET:SETTING (e.g. set5:g20)")
        folder, setting = part.rsplit(":", 1)
        if setting not in SETTINGS:
            raise ValueError(f"validation suite cell {part!r}: unknown setting {setting!r}; choose from {sorted(SETTINGS)}")
        path = Path(folder)
        if not path.is_dir():
            path = Path(root) / folder
        if not path.is_dir():
            raise ValueError(f"validation suite cell {part!r}: no folder {folder!r} (nor under {root})")
        out.append((f"{Path(folder).name}:{setting}", path, setting))
    if not out:
        raise ValueError(f"empty validation suite {spec!r}")
    return out


def load_suite(spec: str, root, scale: int = 2, limit: int | None = None) -> ValSuite:
    return ValSuite((name, load_valset(path, setting, scale, limit)) for name, path, setting in parse_suite(spec, root))


def validate_suite(params, suite: ValSuite, steps: Sequence[int] = (1, 10), **kw) -> dict:
    """:func:`validate` on every cell: ``psnr_{n}`` and ``bicubic`` are the means over the
    cells (each cell the mean over its images), ``cells`` holds each cell's results and
    ``images`` each image's, keyed ``"set5:g20/baby"``."""
    t0 = time.perf_counter()
    cells, images = {}, {}
    want_images = kw.pop("per_image", False)
    for name, vs in suite.cells:
        r = validate(params, vs, steps, per_image=True, **kw)
        for img, v in r.pop("images").items():
            images[f"{name}/{img}"] = v
        r.pop("val_time")
        cells[name] = {k: round(float(v), 4) for k, v in r.items()}
    res = {k: float(np.mean([c[k] for c in cells.values()])) for k in next(iter(cells.values()))}
    res["val_time"] = time.perf_counter() - t0
    res["cells"] = cells
    if want_images:
        res["images"] = images
    return res


def validate(
    params: Mapping[str, torch.Tensor] | str | Path,
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
    ``params``: a params dict, or the path of a weights file or bank (a bank starts from the
    entry of ``valset.kernel``, as ``adapt_and_upscale`` does).
    Keys ``psnr_{n}``, ``bicubic``, ``val_time`` (floats); with ``per_image`` also
    ``images``: ``{name: {"psnr_{n}": dB}}`` (one image, e.g. Set5 butterfly, can move the mean
    by a dB)."""
    t0 = time.perf_counter()
    if isinstance(params, (str, Path)):  # a weights file or bank (the bank picks the start per cell's kernel)
        dev, p = torch.device(device or "cpu"), params
    else:
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
    suite = getattr(args, "val_suite", None)
    if suite:
        parse_suite(suite, Path(args.val_data).parent)  # a bad suite fails on every rank, before training
    if not (main and args.val_every and (args.val_data or suite)):
        return None, val_steps
    if suite:
        valset = load_suite(suite, Path(args.val_data).parent, args.scale, args.val_limit)
    else:
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

    run_val = validate_suite if isinstance(valset, ValSuite) else validate
    res = run_val({k: v.detach() for k, v in params.items()}, valset, val_steps, device=device,
                  backend=args.val_backend, per_image=True)
    images = res.pop("images")
    cells = res.pop("cells", None)
    log.log(kind="val", step=step, time=train_time_s, setting=valset.setting, **res, images=images,
            **({"cells": cells} if cells else {}))
    bar.write(f"[{prefix}] step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()))
    keys = best_keys(args.best_metric, val_steps)
    key = "+".join(keys)
    score = sum(res[k] for k in keys)
    wmeta = dict(steps=step, train_time_s=round(train_time_s, 1), val_setting=valset.setting,
                 **{f"val_{k}": round(v, 3) for k, v in res.items()}, **meta)
    if args.keep_val_snapshots:
        export_weights(out / f"val_step{step}.safetensors", params, **wmeta)
    prev = best.get("setting")
    if best and (prev != valset.setting if prev is not None else isinstance(valset, ValSuite)):
        # the validation changed (e.g. a run continued as a campaign with the suite): a score
        # of another validation is no yardstick; the first one of the new kind starts afresh
        bar.write(f"[{prefix}] validation changed ({prev or 'single set'} -> {valset.setting}): best restarts here")
        best = {}
    if score > best.get("score", best.get(key, -1e9)):
        best = {**res, "step": step, "key": key, "score": score, "setting": valset.setting}
        export_weights(out / "best.safetensors", params, **wmeta)
    return best
