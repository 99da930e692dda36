"""Evaluation of blind kernel estimation (issue 17): per image, MZSR(steps) with the true
kernel, with the estimated kernel (:func:`mzsr_fast.kernel_estimate.estimate_kernel`) and with
``kernel=None``; the kernel error, and the estimation time next to the time of the
``steps``-step call with the true kernel (same image, backend, device, threads).

Settings: the paper's direct ones by name (``g^d_0.2``, ``g^d_2.0``, ``g^d_ani``) and
``random`` (the seeded anisotropic Gaussians of :func:`mzsr_fast.kernel_estimate.random_kernels`;
``random_pairs="all"``: every image with every kernel, ``"cycle"``: kernel ``i`` with image
``i mod n_images``, cheaper).  ``python -m mzsr_fast.kernel_eval --help``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from . import metrics
from .io import load_hr_image, write_atomic
from .api import adapt_and_upscale
from .degradation import degrade, setting as _setting
from .kernel_estimate import METHODS, estimate_kernel, kernel_error, random_kernel_params, random_kernels

__all__ = ["evaluate", "load_hr", "cases", "summarize"]

DIRECT_SETTINGS = ("g^d_0.2", "g^d_2.0", "g^d_ani")


def load_hr(folder, scale: int = 2, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """``[(stem, hr (H, W, 3) uint8 mod-cropped to the scale)]`` of the images of ``folder``."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".bmp", ".jpg"))
    if not files:
        raise ValueError(f"no images in {folder}")
    return [(p.stem, load_hr_image(p, scale)) for p in files[:limit]]


def cases(images, setting: str, *, n_random: int = 20, seed: int = 0, random_pairs: str = "all", scale: int = 2):
    """``[(case name, hr, kernel, subsampling, kernel params or None)]`` of one setting."""
    if setting in DIRECT_SETTINGS:
        k, sub = _setting(setting)
        return [(name, hr, k, sub, None) for name, hr in images]
    if setting != "random":
        raise ValueError(f"unknown setting {setting!r}; choose from {list(DIRECT_SETTINGS) + ['random']}")
    if random_pairs not in ("all", "cycle"):
        raise ValueError(f"random_pairs must be 'all' or 'cycle', got {random_pairs!r}")
    ks, ps = random_kernels(n_random, seed, scale), random_kernel_params(n_random, seed, scale)
    if random_pairs == "cycle":
        return [(f"{images[i % len(images)][0]}/k{i}", images[i % len(images)][1], ks[i], "direct", ps[i])
                for i in range(n_random)]
    return [(f"{name}/k{i}", hr, ks[i], "direct", ps[i]) for i in range(n_random) for name, hr in images]


def _timed(fn):
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t


def evaluate(folder, settings=DIRECT_SETTINGS + ("random",), *, scale: int = 2, steps: int = 10, limit=None,
             n_random: int = 20, seed: int = 0, random_pairs: str = "all", backend: str = "auto", device=None,
             budget: float | None = None, est_seed: int = 0, method: str = "auto", none_settings=None,
             log=print) -> dict:
    """Run the evaluation; returns ``{"settings": {name: summary}, "rows": [per case]}``.

    Each row: ``psnr_true``, ``psnr_est``, ``psnr_none`` (Y-PSNR, dB, shave = scale),
    ``kernel_err`` (:func:`kernel_error`), ``est_var1``/``est_var2``/``est_theta``,
    ``t_est`` (s), ``t_adapt`` (s, the whole ``steps``-step call with the true kernel) and
    ``time_ratio`` = ``t_est / t_adapt``.  ``method``: :func:`estimate_kernel`'s.
    ``none_settings``: the settings where ``kernel=None`` is run too (``None``: all; the
    others' ``psnr_none`` is ``None``, which saves a quarter of the time)."""
    images = load_hr(folder, scale, limit)
    kw = dict(backend=backend, device=device)
    rows = []
    for st in settings:
        for name, hr, k, sub, params in cases(images, st, n_random=n_random, seed=seed, random_pairs=random_pairs,
                                               scale=scale):
            lr = degrade(hr, k, scale, sub)
            # warm the backend on this shape, so neither timed call pays a first-call cost
            adapt_and_upscale(lr, scale=scale, kernel=k, steps=1, subsampling=sub, **kw)
            sr_true, t_adapt = _timed(lambda: adapt_and_upscale(lr, scale=scale, kernel=k, steps=steps,
                                                                subsampling=sub, **kw))
            ek_kw = {} if budget is None else {"budget": budget}
            (ek, info), t_est = _timed(lambda: estimate_kernel(lr, scale, sub, seed=est_seed, method=method, **kw,
                                                               **ek_kw))
            sr_est = adapt_and_upscale(lr, scale=scale, kernel=ek, steps=steps, subsampling=sub, **kw)
            run_none = none_settings is None or st in none_settings
            psnr_none = (metrics.psnr_y(adapt_and_upscale(lr, scale=scale, kernel=None, steps=steps, **kw), hr, scale)
                         if run_none else None)
            row = dict(setting=st, image=name, true=params, psnr_true=metrics.psnr_y(sr_true, hr, scale),
                       psnr_est=metrics.psnr_y(sr_est, hr, scale), psnr_none=psnr_none,
                       kernel_err=kernel_error(ek, k), est_var1=info["var1"], est_var2=info["var2"],
                       est_theta=info["theta"], evals=info["evals"], crop=info["crop"], method=info["method"], t_est=t_est,
                       t_adapt=t_adapt, time_ratio=t_est / t_adapt)
            row = {a: (round(b, 4) if isinstance(b, float) else b) for a, b in row.items()}
            rows.append(row)
            if log:
                none = "-" if row["psnr_none"] is None else f"{row['psnr_none']:.2f}"
                log(f"{st} {name}: true {row['psnr_true']:.2f} est {row['psnr_est']:.2f} none {none} "
                    f"dB, var {row['est_var1']:.2f}/{row['est_var2']:.2f}, kerr {row['kernel_err']:.3f}, "
                    f"t_est {t_est:.2f}s / t_adapt {t_adapt:.2f}s = {row['time_ratio']:.2f}x")
    return {"settings": summarize(rows), "rows": rows}


def summarize(rows) -> dict:
    """Per setting: the means of the PSNRs, kernel error, times; the worst time ratio."""
    out = {}
    for st in dict.fromkeys(r["setting"] for r in rows):
        rs = [r for r in rows if r["setting"] == st]
        m = {k: round(float(np.mean([r[k] for r in rs])), 3)
             for k in ("psnr_true", "psnr_est", "kernel_err", "t_est", "t_adapt", "time_ratio")}
        nones = [r["psnr_none"] for r in rs if r.get("psnr_none") is not None]
        m["psnr_none"] = round(float(np.mean(nones)), 3) if len(nones) == len(rs) else None
        m["est_minus_true"] = round(m["psnr_est"] - m["psnr_true"], 3)
        m["est_minus_none"] = None if m["psnr_none"] is None else round(m["psnr_est"] - m["psnr_none"], 3)
        m["max_time_ratio"] = round(max(r["time_ratio"] for r in rs), 3)
        m["n"] = len(rs)
        out[st] = m
    return out


def _write_json(path, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mzsr_fast.kernel_eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="folder of HR images (e.g. ../shared/data/set5)")
    ap.add_argument("--settings", default=",".join(DIRECT_SETTINGS + ("random",)))
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--n-random", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="seed of the random kernels")
    ap.add_argument("--random-pairs", default="all", choices=("all", "cycle"))
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--device", default=None)
    ap.add_argument("--budget", type=float, default=None)
    ap.add_argument("--method", default="auto", choices=METHODS, help="estimate_kernel's method")
    ap.add_argument("--none-settings", default=None,
                    help="comma-separated settings where kernel=None runs too [all]")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    a = ap.parse_args(argv)
    res = evaluate(a.folder, [s for s in a.settings.split(",") if s], steps=a.steps, limit=a.limit,
                   n_random=a.n_random, seed=a.seed, random_pairs=a.random_pairs, backend=a.backend,
                   device=a.device, budget=a.budget, method=a.method,
                   none_settings=None if a.none_settings is None else a.none_settings.split(","),
                   log=lambda s: print(s, flush=True))
    res["args"] = vars(a)
    for st, m in res["settings"].items():
        print(st, json.dumps(m))
    if a.out:
        _write_json(a.out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
