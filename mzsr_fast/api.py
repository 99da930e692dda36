"""The public one-call API: ``adapt_and_upscale``.

One pass, no step goes back (docs/architecture.md)::

    options.Options: every option validated once (the CLI shares it)
    -> io.to_internal: (1, 3, H, W) float32 in [0, 1] on the device, kernel checked
    -> plan.plan: per phase, the whole image, exact tiles or crops, from the memory budget
    -> run.run: per image, prep.make_inputs (son_up, lr_up) -> backend.prepare(weights copy)
       -> adaptation son_up -> LR (whole / tiles / crops) -> upscale (whole / tiles)
    -> io.from_internal: clamped, back to the caller's kind and dtype.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

from . import io as _io
from . import kernel_estimate as _estimate
from . import options as _options
from . import plan as _plan
from . import run as _run
from .options import Options, default_lr_schedule, load_params, resolve_device
from .progress import ProgressArg

__all__ = ["adapt_and_upscale", "default_lr_schedule", "resolve_device", "load_params", "Options"]


def _estimated(xs, opts: Options, weights, backend: str):
    """``kernel="estimate"``: the kernel of the one image in ``xs`` from the image itself
    (:func:`mzsr_fast.kernel_estimate.estimate_kernel`), then used as if given."""
    if len(xs) != 1:
        raise ValueError(f'kernel="estimate" takes one image per call, got a batch of {len(xs)}')
    opts.check_image(*xs[0].shape[-2:], None)
    return _estimate.estimate_kernel(xs[0], opts.scale, opts.subsampling, weights=weights, backend=backend,
                                     device=opts.device)


def adapt_and_upscale(
    image,
    *,
    scale: int = 2,
    kernel=None,
    steps: int | None = None,
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
    progress: ProgressArg = None,
    ensemble: bool | None = None,
    back_projection: int | bool | None = None,
    quality: str | None = None,
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
            ``"estimate"``: estimated from the image itself (a Gaussian,
            :func:`mzsr_fast.kernel_estimate.estimate_kernel`: the shipped kernel predictor
            where there is one (x2 direct; ~0.2x the time of ``steps=10``), else a search
            scored by the meta-learned network (~1.5x); one image per call); returned in
            ``info["kernel"]`` (docs/kernel_estimation.md: its accuracy, measured).
        steps: SGD steps of adaptation (0 = plain forward of the weights); ``None``: 10, or
            the ``quality`` preset's.
        subsampling: ``"direct"`` (``[0::s]``) or ``"bicubic"``: how the son is made.
        weights: ``None`` (shipped default for ``(scale, subsampling)``), a safetensors path,
            or a params dict (see :mod:`mzsr_fast.model`).  Never modified.  A bank file
            (:mod:`mzsr_fast.bank`) starts from the entry the kernel selects
            (``info["weights"]`` = ``"PATH#ENTRY"``).
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
            (same result to float rounding, see :mod:`mzsr_fast.tiles`).  The budget covers
            this call's buffers, not the process's own baseline (Python, torch).
        adapt_on: ``"full"`` (adapt on the whole image, default) or ``"crops"``: each step
            on ``n_crops`` random ``crop_size`` x ``crop_size`` LR crops (seeded by
            ``crop_seed``, deterministic); cheaper for large images at a small PSNR cost
            (docs/api.md, "Large images and memory").
        lr_search: choose the first step's learning rate between the schedule's and half of
            it by the loss on the image's own training pair (son -> LR) after that step: no
            ground truth, two extra trial steps (docs/training.md, "Adaptation schedule per weights file").
        return_info: also return a dict with the time of each phase (s), the loss at each
            step, the backend used and why, and the tiling (``info["tiling"]``: budget,
            mode and tile size per phase, estimated bytes, and ``masked_grads``: what
            computes the gradients of tiles and crops).
        progress: ``None`` (a bar on stderr only when it is a terminal), ``False``, ``True``
            or ``callable(done, total, desc)`` (:mod:`mzsr_fast.progress`): progress over
            the tiles of a tiled adaptation (per step and tile) or upscale, and over the
            steps of ``adapt_on="crops"``; a whole image shows nothing.
        ensemble: upscale the 8 rot90 x mirror frames of the LR with the adapted network and
            take the per-pixel median (frame shifts of direct subsampling undone); 8 upscales
            instead of 1.  ``None``: off, or the ``quality`` preset's.
        back_projection: rounds of ``sr += imresize(lr - degrade(sr))`` with the image's own
            kernel and subsampling after the upscale (``True`` = 20, ``False``/0 = off);
            ``None``: off, or the preset's.  Cheap (no network) and +0.2..+1.1 dB on training
            images with a known kernel (docs/results.md).
        quality: ``None`` (the options above), ``"fast"`` (1 step, back-projection),
            ``"balanced"`` (10 steps, back-projection) or ``"best"`` (10 steps, ensemble,
            back-projection) (:data:`mzsr_fast.options.QUALITY_PRESETS`); an option given
            explicitly overrides the preset's.

    Raises:
        TypeError / ValueError naming the problem for bad images, kernels, options.
    """
    t0 = time.perf_counter()
    opts = Options(scale=scale, steps=steps, subsampling=subsampling, backend=backend, device=device,
                   lr_schedule=lr_schedule, precision=precision, max_memory=max_memory, adapt_on=adapt_on,
                   crop_size=crop_size, n_crops=n_crops, crop_seed=crop_seed, lr_search=lr_search, progress=progress,
                   ensemble=ensemble, back_projection=back_projection, quality=quality)
    steps = opts.steps
    estimate = isinstance(kernel, str) and kernel == "estimate"
    k = None if estimate else _io.load_kernel(kernel)
    xs, meta = _io.to_internal(image, opts.device)
    h, w = xs[0].shape[-2:]
    k, est = _estimated(xs, opts, weights, backend) if estimate else (k, None)
    sub_eff = subsampling if k is not None else "bicubic"
    opts.check_image(h, w, k)
    params, wdesc = load_params(weights, scale, sub_eff if weights is None else subsampling, kernel=k)
    sched = _options.schedule(lr_schedule, steps, _options.recommended_schedule(wdesc))
    _options.warn_unadapted_meta(wdesc, steps)
    params = _options.params_on(params, wdesc, opts.device)
    be = _options.backend_instance(backend, opts.device, precision)
    plan = _plan.plan(be.name, h, w, scale, steps, opts.budget, opts.budget_source, adapt_on=adapt_on,
                      crop_size=crop_size, n_crops=n_crops, ensemble=opts.ensemble,
                      back_projection=opts.back_projection)
    t_setup = time.perf_counter() - t0
    r = _run.run(be, params, xs, k, scale, sub_eff, sched, plan, crop_size=crop_size, n_crops=n_crops,
                 crop_seed=crop_seed, lr_search=lr_search, timed=return_info, progress=progress,
                 ensemble=opts.ensemble, back_projection=opts.back_projection)
    del xs
    result = _io.from_internal(r.pop("outs"), meta)
    if not return_info:
        return result
    losses = [[float(v) for v in ls.detach().cpu()] for ls in r["losses"]]
    searches = r["searches"]
    tiling = plan.as_info()
    tiling["masked_grads"] = be.masked_grads if plan.adapt_mode in ("tiled", "crops") else ""
    info = {
        "backend": be.name,
        "backend_detail": be.describe(),
        "backend_note": getattr(be, "note", ""),
        "device": str(opts.device),
        "precision": precision,
        "weights": wdesc,
        "subsampling": sub_eff,
        "lr_schedule": sched,
        "kernel": k,
        "kernel_estimate": est,
        "quality": quality,
        "ensemble": opts.ensemble,
        "back_projection": opts.back_projection,
        "lr_search": (searches[0] if len(searches) == 1 else searches) if searches else None,
        "losses": losses[0] if len(losses) == 1 else losses,
        "times": {"setup": t_setup, "estimate": est["time"] if est else 0.0, **r["times"],
                  "total": time.perf_counter() - t0},
        "tiling": tiling,
    }
    return result, info
