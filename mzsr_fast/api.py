"""The public one-call API: ``adapt_and_upscale``.

One pass, no step goes back::

    image -> io.to_internal: (1, 3, H, W) float32 in [0, 1] on the device, kernel checked
    -> tiling.plan: per phase, the whole image or exact tiles, from the memory budget
    -> prep.make_inputs: son = degrade(LR, k, s); son_up = imresize(son, (H, W));
       lr_up = imresize(LR, (sH, sW))   (one replayed CUDA graph on a GPU; with upscale
       tiles, lr_up is made per tile instead)
    -> backend.prepare(weights copy); adaptation son_up -> LR with the lr schedule
       (backend.adapt on the whole image, exact tiles, or a sample of crops)
    -> upscale: the backend's forward of lr_up (whole or tiles) -> clamp, back to the
       caller's kind and dtype.
"""
from __future__ import annotations

import functools
import math
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from . import backends as _backends
from . import io as _io
from . import model as _model
from . import prep as _prep
from . import tiling as _tiling

__all__ = ["adapt_and_upscale", "default_lr_schedule", "resolve_device", "load_params"]


def default_lr_schedule(steps: int) -> list[float]:
    """Per-step learning rates of the official Directx2 model (SPEC section 3):
    step 0: 2e-2, steps 1-3: 1e-2, then 5e-3."""
    return [2e-2 if i == 0 else 1e-2 if i <= 3 else 5e-3 for i in range(steps)]


def _schedule(lr_schedule, steps: int, recommended: Sequence[float] | None = None) -> list[float]:
    """The per-step learning rates of a call.  ``None`` -> the weights file's recommended
    schedule (metadata ``lr_schedule``, its last value repeated) if it has one, else
    :func:`default_lr_schedule`."""
    if lr_schedule is None and recommended:
        rec = [float(v) for v in recommended]
        sched = (rec + [rec[-1]] * max(0, steps - len(rec)))[:steps]
    elif lr_schedule is None:
        sched = default_lr_schedule(steps)
    elif callable(lr_schedule):
        sched = [float(lr_schedule(i)) for i in range(steps)]
    elif isinstance(lr_schedule, (int, float)):
        sched = [float(lr_schedule)] * steps
    else:
        sched = [float(v) for v in lr_schedule]
        if len(sched) < steps:
            raise ValueError(f"lr_schedule has {len(sched)} entries but steps={steps}")
        sched = sched[:steps]
    for v in sched:
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"learning rates must be finite and >= 0, got {v}")
    return sched


def resolve_device(device) -> torch.device:
    """None -> cuda if available else cpu; a string/device is validated (ValueError)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"invalid device {device!r}: {e}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r} (cpu or cuda)")
    return dev


@functools.lru_cache(maxsize=8)
def _load_cached(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    return _model.load_weights(path)


def load_params(weights, scale: int, subsampling: str) -> tuple[dict[str, torch.Tensor], str]:
    """weights: None (shipped default), a path, or a params dict -> (CPU params, description)."""
    if weights is None:
        path = _model.default_weights_path(scale, subsampling)
        return _load_cached(str(path))[0], str(path)
    if isinstance(weights, Mapping):
        # keys, shapes, dtype, NaN/inf named (one device->host read); never modifies the dict
        return _model.check_params(weights, "weights dict"), "<params dict>"
    if isinstance(weights, (str, Path)):
        path = str(Path(weights).resolve())
        return _load_cached(path)[0], path
    raise TypeError(f"weights must be None, a path or a dict of tensors, got {type(weights).__name__}")


def _warn_unadapted_meta(wdesc: str, steps: int) -> None:
    """steps=0 with a meta-learned weights file (metadata ``stage`` meta*): such a start is
    trained to be good after adaptation, not before, and can be below bicubic unadapted
    (the shipped ``mzsr_x2_direct``: 20.8 dB against bicubic 28.7 on Set5 g^d_2.0)."""
    if steps != 0 or wdesc == "<params dict>":
        return
    if str(_load_cached(wdesc)[1].get("stage", "")).startswith("meta"):
        warnings.warn(f"steps=0 with the meta-learned weights {Path(wdesc).name}: this start is meant to be "
                      "adapted (steps >= 1) and can be worse than bicubic without it; for a plain forward pass use "
                      "the pretrained weights (weights=mzsr_fast.model.WEIGHTS_DIR / 'pretrain_x2_bicubic.safetensors')",
                      UserWarning, stacklevel=3)


def _recommended_schedule(wdesc: str) -> list[float] | None:
    """The adaptation schedule recorded in a weights file (None for a params dict or a
    file without one); see :func:`mzsr_fast.model.schedule_from_metadata`."""
    if wdesc == "<params dict>":
        return None
    return _model.schedule_from_metadata(_load_cached(wdesc)[1], f"weights file {wdesc}")


_tls = threading.local()
_dev_params_lock = threading.Lock()
_dev_params: dict = {}


def _params_on(params: dict[str, torch.Tensor], key: str, device: torch.device) -> dict[str, torch.Tensor]:
    """Shipped/file weights kept once per device (read-only: backends copy them in
    prepare), so a call does no host-to-device weight copies."""
    if device.type == "cpu" or key == "<params dict>":
        return params
    k = (key, str(device))
    with _dev_params_lock:
        if k not in _dev_params:
            if len(_dev_params) >= 8:
                _dev_params.clear()
            _dev_params[k] = {n: v.to(device) for n, v in params.items()}
        return _dev_params[k]


def _backend(name: str, device: torch.device, precision: str):
    """A backend instance per (thread, name, device, precision, the backend's environment
    switches): instances keep buffers and captured graphs across calls, and threads never
    share one; changing a switch such as ``MZSR_FAST_CUDA_VARIANT`` gives a new instance."""
    cache = getattr(_tls, "backends", None)
    if cache is None:
        cache = _tls.backends = {}
    env = tuple(os.environ.get(v) for v in _backends.env_switches(name))
    key = (name, str(device), precision, env)
    if key not in cache:
        cache[key] = _backends.get(name, device, precision)
    return cache[key]


ADAPT_ON = ("full", "crops")


def _positive_int(name: str, v) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    return v


def _budget(max_memory, device: torch.device) -> tuple[int, str]:
    """max_memory -> (bytes, where from); None: the device's default (tiling.default_budget)."""
    if max_memory is None:
        return _tiling.default_budget(device)
    return _tiling.parse_memory(max_memory), f"max_memory={max_memory!r}"


def _adapt(be, plan, son_up, x, schedule, *, crop_size, n_crops, seed) -> torch.Tensor:
    """The adaptation as the plan says: on a sample of crops, exact tiles or the whole image
    (backend.adapt); the (k,) losses."""
    if plan.adapt_mode == "crops":
        return _tiling.adapt_on_crops(be, son_up, x, schedule, crop_size=crop_size, n_crops=n_crops, seed=seed,
                                      batch=plan.adapt_batch)
    return _tiling.adapt(be, son_up, x, schedule, tile=plan.adapt_tile)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def adapt_and_upscale(
    image,
    *,
    scale: int = 2,
    kernel=None,
    steps: int = 10,
    subsampling: str = "direct",
    weights=None,
    backend: str = "auto",
    device=None,
    lr_schedule: Sequence[float] | float | Callable[[int], float] | None = None,
    precision: str = "fp32",
    max_memory: int | str | None = None,
    adapt_on: str = "full",
    crop_size: int = 128,
    n_crops: int = 16,
    crop_seed: int = 0,
    lr_search: bool = False,
    return_info: bool = False,
):
    """Adapt the meta-learned network to ``image`` in ``steps`` SGD steps and upscale it.

    Args:
        image: numpy ``(H, W)``/``(H, W, C)`` (uint8, uint16 or float in [0, 1]),
            ``PIL.Image``, or torch ``(C, H, W)``/``(N, C, H, W)`` (float in [0, 1] or
            uint8); C in 1, 3, 4.  The result has the same kind, dtype and layout, ``scale``
            times larger.  Greyscale runs as 3 equal channels; alpha is resized, not adapted.
        scale: integer upscaling factor (>= 2).
        kernel: the blur kernel of the image (odd-sided 2-D array/tensor, or a path to
            ``.mat`` with key ``kernel`` or ``.npy``); normalised to sum 1.  ``None`` means
            bicubic degradation (no blur, MATLAB bicubic downscaling), whatever ``subsampling``.
        steps: SGD steps of adaptation (0 = plain forward of the weights).
        subsampling: ``"direct"`` (``[0::s]``) or ``"bicubic"``: how the son is made.
        weights: ``None`` (shipped default for ``(scale, subsampling)``), a safetensors path,
            or a params dict (see :mod:`mzsr_fast.model`).  Never modified.
        backend: ``"auto"``, ``"reference"``, ``"cpu"``, ``"triton"`` or ``"cuda"``.
        device: ``None`` (cuda if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        lr_schedule: ``None`` (the weights file's recommended schedule, metadata
            ``lr_schedule``, where it has one, else :func:`default_lr_schedule`), a float, a sequence of at
            least ``steps`` floats, or ``callable(step) -> lr``.
        precision: ``"fp32"`` (default), ``"tf32"`` or ``"bf16"`` where the backend has them.
        max_memory: memory budget of the call (bytes, or a string like ``"4GiB"``,
            ``"512MB"``); ``None``: half of the free memory of the device (MemAvailable on
            CPU, ``torch.cuda.mem_get_info`` on CUDA).  Each phase runs on the whole image
            when its estimate fits, else on the largest tiles that fit; tiling is exact
            (same result to float rounding, see :mod:`mzsr_fast.tiling`).  The budget covers
            this call's buffers, not the process's own baseline (Python, torch).
        adapt_on: ``"full"`` (adapt on the whole image, default) or ``"crops"``: each step
            on ``n_crops`` random ``crop_size`` x ``crop_size`` LR crops (seeded by
            ``crop_seed``, deterministic); cheaper for large images at a small PSNR cost
            (README, "Large images and memory").
        lr_search: choose the first step's learning rate between the schedule's and half of
            it by the loss on the image's own training pair (son -> LR) after that step: no
            ground truth, two extra trial steps (README, "Adaptation schedule").
        return_info: also return a dict with the time of each phase (s), the loss at each
            step, the backend used and why, and the tiling (``info["tiling"]``: budget,
            mode and tile size per phase, estimated bytes).

    Raises:
        TypeError / ValueError naming the problem for bad images, kernels, options.
    """
    t0 = time.perf_counter()
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 2:
        raise ValueError(f"scale must be an int >= 2, got {scale!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if subsampling not in ("direct", "bicubic"):
        raise ValueError(f"subsampling must be 'direct' or 'bicubic', got {subsampling!r}")
    if not isinstance(backend, str) or backend not in _backends.NAMES:
        raise ValueError(f"unknown backend {backend!r}; choose one of {_backends.NAMES}")
    if precision not in _backends.PRECISIONS:
        raise ValueError(f"precision must be one of {_backends.PRECISIONS}, got {precision!r}")
    if adapt_on not in ADAPT_ON:
        raise ValueError(f"adapt_on must be one of {ADAPT_ON}, got {adapt_on!r}")
    _positive_int("crop_size", crop_size)
    _positive_int("n_crops", n_crops)
    if not isinstance(crop_seed, int) or isinstance(crop_seed, bool):
        raise ValueError(f"crop_seed must be an int, got {crop_seed!r}")
    if not isinstance(lr_search, bool):
        raise ValueError(f"lr_search must be True or False, got {lr_search!r}")
    dev = resolve_device(device)
    budget, budget_source = _budget(max_memory, dev)
    k = _io.load_kernel(kernel)
    sub_eff = subsampling if k is not None else "bicubic"
    xs, meta = _io.to_internal(image, dev)
    h, w = xs[0].shape[-2:]
    if min(h, w) < scale:
        raise ValueError(f"image of {h}x{w} pixels is too small for scale {scale} (needs at least {scale}x{scale})")
    if k is not None and (k.shape[0] > h or k.shape[1] > w):
        raise ValueError(f"kernel of shape {k.shape} is larger than the {h}x{w} image")
    params, wdesc = load_params(weights, scale, sub_eff if weights is None else subsampling)
    sched = _schedule(lr_schedule, steps, _recommended_schedule(wdesc))
    _warn_unadapted_meta(wdesc, steps)
    params = _params_on(params, wdesc, dev)
    be = _backend(backend, dev, precision)
    plan = _tiling.plan(be, h, w, scale, steps, budget, budget_source, adapt_on=adapt_on, crop_size=crop_size,
                        n_crops=n_crops)
    # per-phase times need a device sync at each phase boundary; without return_info the
    # whole pass is queued with no sync until the result is read back
    sync = _sync if return_info else (lambda d: None)
    t_setup = time.perf_counter() - t0

    outs, all_losses, searches = [], [], []
    times = {"setup": t_setup, "degrade": 0.0, "prepare": 0.0, "adapt": 0.0, "upscale": 0.0}
    for x in xs:
        t = time.perf_counter()
        if plan.upscale_tile is None:
            son_up, lr_up = _prep.make_inputs(x, k, scale, sub_eff)
        else:  # large image: lr_up is made per tile; the son only when adapting
            son_up = _prep.son_up(x, k, scale, sub_eff) if steps else None
            lr_up = None
        sync(dev)
        t1 = time.perf_counter()
        be.prepare(params, tuple(x.shape))
        sync(dev)
        t2 = time.perf_counter()
        crops = dict(crop_size=crop_size, n_crops=n_crops, seed=crop_seed)

        img_sched = sched
        if steps and lr_search:
            # trial first steps from the same start; the loss of the step after (lr 0) is the
            # training-pair loss each one reached
            trials = []
            for c in (sched[0], sched[0] / 2):
                trials.append((float(_adapt(be, plan, son_up, x, [c, 0.0], **crops)[1]), c))
                be.prepare(params, tuple(x.shape))
            img_sched = [min(trials)[1]] + sched[1:]
            searches.append({"candidates": [c for _, c in trials], "losses": [v for v, _ in trials],
                             "chosen": img_sched[0]})
        losses = _adapt(be, plan, son_up, x, img_sched, **crops) if steps else torch.zeros(0)
        del son_up
        sync(dev)
        t3 = time.perf_counter()
        sr = _tiling.upscale(be, x, scale, tile=plan.upscale_tile, lr_up=lr_up)  # clamped to [0, 1]
        del lr_up
        if plan.tiled:  # a large image: the backend's kept scratch would sit under the conversion
            be.release_workspace()
        sync(dev)
        t4 = time.perf_counter()
        times["degrade"] += t1 - t
        times["prepare"] += t2 - t1
        times["adapt"] += t3 - t2
        times["upscale"] += t4 - t3
        outs.append(sr)
        if return_info:
            all_losses.append([float(v) for v in losses.detach().cpu()])
    del x, xs, sr
    result = _io.from_internal(outs, meta)
    if not return_info:
        return result
    times["total"] = time.perf_counter() - t0
    info = {
        "backend": be.name,
        "backend_detail": be.describe(),
        "backend_note": getattr(be, "note", ""),
        "device": str(dev),
        "precision": precision,
        "weights": wdesc,
        "subsampling": sub_eff,
        "lr_schedule": sched,
        "lr_search": (searches[0] if len(searches) == 1 else searches) if searches else None,
        "losses": all_losses[0] if len(all_losses) == 1 else all_losses,
        "times": times,
        "tiling": plan.as_info(),
    }
    return result, info
