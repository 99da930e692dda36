"""The planner (pure): per phase of one image, the whole image, exact tiles or a sample of
crops, from the memory budget.  No tensors, no backend objects: numbers in, a :class:`Plan`
out (:func:`plan`).

Memory model
------------
The bytes of each phase (adaptation, upscaling, conversion back to the caller's kind) are
estimated as

    image buffers  +  bytes_per_pixel(backend, kind) * pixels worked on at once  +  constant

with :func:`memory_per_pixel` (kinds ``forward``, ``adapt``, ``region_grads``, and the
constant ``const``; measured, see ``benchmarks/bench_large.py --calibrate``) and the image
buffers of :data:`IMAGE_BYTES` (float32 copies alive during the call).  A phase runs whole
when it fits the budget, else on the largest tile that fits.
"""
from __future__ import annotations

import dataclasses
import math

from .tiles import HALO, MIN_TILE, region_shape, tiles

__all__ = ["IMAGE_BYTES", "REFINE_BYTES", "MEMORY_BYTES_PER_PIXEL", "memory_per_pixel",
           "Plan", "plan"]

#: working bytes per pixel (besides the input/output images) of ``forward`` (per pixel of
#: its input), ``adapt`` (per pixel of the adaptation input) and ``region_grads`` (masked
#: gradients, per pixel of the region), and a constant ``const`` (bytes), per backend.
#:
#: Peak RSS above the start of the op in a fresh process at 384^2 and 768^2, a line fit
#: (benchmarks/bench_large.py --calibrate), plus a 15% margin here: rows
#: ``memory/<kind>_bytes_per_pixel`` / ``memory/<kind>_const``, providers ``reference_fp32``
#: and ``cpu_fp32``, of benchmarks/results/cpu-amd-epyc-2c.csv.  Backends not calibrated
#: yet (triton, cuda) use the reference's figures.
MEMORY_BYTES_PER_PIXEL: dict[str, dict[str, float]] = {
    "reference": {"forward": 900.0, "adapt": 3000.0, "region_grads": 3000.0, "const": 32 * 2**20},
    "cpu": {"forward": 640.0, "adapt": 2200.0, "region_grads": 2800.0, "const": 32 * 2**20},
}


def memory_per_pixel(backend, kind: str) -> float:
    """Working bytes per pixel of ``kind`` (``forward``, ``adapt``, ``region_grads``) or the
    constant ``const`` (bytes) of ``backend`` (a name, or an object with ``.name``);
    :data:`MEMORY_BYTES_PER_PIXEL`, the reference's figures for a backend not in it."""
    name = backend if isinstance(backend, str) else getattr(backend, "name", "reference")
    table = MEMORY_BYTES_PER_PIXEL.get(name, MEMORY_BYTES_PER_PIXEL["reference"])
    try:
        return float(table[kind])
    except KeyError:
        raise ValueError(f"unknown memory kind {kind!r}; one of {sorted(table)}") from None


#: float32 image-sized buffers (bytes per pixel, 3 channels x 4 bytes = 12) alive in each
#: phase of adapt_and_upscale, besides the tiles' working memory.  LR pixels: the input as
#: given plus its float32 copy (2 x 12), and in adaptation the son upsampled to LR size (12).
#: HR pixels: the bicubic ``lr_up`` (12; whole, or per tile region), the float32 output
#: (12); at the end the conversion back to the caller's kind
#: (io.from_internal: a clamped copy and a concatenated copy, then the caller's dtype)
#: adds up to 3 x 12.  Measured, not guessed: see benchmarks/bench_large.py.
IMAGE_BYTES = {"lr": 24, "son_up": 12, "lr_up": 12, "hr_out": 12, "hr_convert": 36}

#: peak bytes per HR output pixel of the test-time refinements (mzsr_fast.run.refine), on the
#: whole output: the 8-frame ensemble (8 outputs, their stack and sort) and back-projection.
#: Measured by benchmarks/mem_refine.py (rows memory/refine_* of the results tables).
REFINE_BYTES = {"ensemble": 550, "back_projection": 200}


@dataclasses.dataclass
class Plan:
    """The tiling of one image.  ``*_tile``: None (whole image) or ``(th, tw)``, the
    largest interior the budget allows; :func:`tiles` then evens the spans out (2048 px
    with a 1195 px tile: 2 tiles of 1024).  ``*_bytes``: the estimate of the phase at that
    tile size (an upper bound of the evened tiles)."""

    budget: int
    budget_source: str
    adapt_mode: str  # "none" | "whole" | "tiled" | "crops"
    adapt_tile: tuple[int, int] | None  # tiles, or the crop size
    adapt_tiles: int  # tiles per step (crops: 0)
    adapt_batch: int  # regions per masked be.grads call (crops go in batches)
    adapt_bytes: int
    upscale_tile: tuple[int, int] | None
    upscale_tiles: int
    upscale_bytes: int
    convert_bytes: int

    @property
    def tiled(self) -> bool:
        """Any phase on tiles or crops (a large image)."""
        return self.upscale_tile is not None or self.adapt_mode in ("tiled", "crops")

    def as_info(self) -> dict:
        return dataclasses.asdict(self)


def _region_px(h: int, w: int, th: int, tw: int) -> int:
    rh, rw = region_shape(h, w, th, tw)
    return rh * rw


def _fit_tile(h: int, w: int, avail: int, bpp: float) -> tuple[int, int] | None:
    """Largest tile whose region's working memory ``bpp * region px`` fits ``avail`` bytes;
    None when even a ``MIN_TILE`` tile does not fit."""
    area = int(avail // bpp) if bpp > 0 else 0
    side = math.isqrt(max(area, 0)) - 2 * HALO
    if side >= min(h, w):
        # the short side fits whole: full-height (or full-width) strips
        if h <= w:
            return h, max(MIN_TILE, min(w, area // h - 2 * HALO))
        return max(MIN_TILE, min(h, area // w - 2 * HALO)), w
    if side < MIN_TILE:
        return None
    return side, side


def _bytes(n_px: int, per_px: float) -> int:
    return int(math.ceil(n_px * per_px))


def plan(backend, h: int, w: int, scale: int, steps: int, budget: int, budget_source: str = "max_memory", *,
         adapt_on: str = "full", crop_size: int = 128, n_crops: int = 16, ensemble: bool = False,
         back_projection: int = 0) -> Plan:
    """Choose tiles for one ``h x w`` LR image so that each phase fits ``budget`` bytes.

    ``backend``: its name (or an object with ``.name``), for :func:`memory_per_pixel`.
    Phase bytes = image buffers (:data:`IMAGE_BYTES`) + ``memory_per_pixel(backend, kind)``
    x the pixels the backend works on at once + ``memory_per_pixel(backend, "const")``.  A
    phase runs whole when it fits, else on the largest tile that fits.  Raises ValueError when the
    image buffers alone, or with the smallest tile (16 px), exceed the budget.  ``ensemble`` /
    ``back_projection`` (the test-time refinements) work on the whole output, untiled: their
    :data:`REFINE_BYTES` must fit beside the output.
    """
    lr_px, hr_px = h * w, h * w * scale * scale
    H, W = h * scale, w * scale
    const = memory_per_pixel(backend, "const")
    need = []

    # upscaling (HR size): the float32 output, written tile by tile when tiled
    fwd = memory_per_pixel(backend, "forward") + IMAGE_BYTES["lr_up"]  # per px: lr_up + the forward
    fixed = _bytes(lr_px, IMAGE_BYTES["lr"]) + _bytes(hr_px, IMAGE_BYTES["hr_out"]) + const
    up_tile, up_tiles, up_bytes = None, 1, fixed + _bytes(hr_px, fwd)
    if up_bytes > budget:
        up_tile = _fit_tile(H, W, budget - fixed, fwd)
        if up_tile is None:
            need.append(("upscaling", fixed + _bytes(_region_px(H, W, MIN_TILE, MIN_TILE), fwd)))
        else:
            up_tiles = len(tiles(H, W, up_tile))
            up_bytes = fixed + _bytes(_region_px(H, W, *up_tile), fwd)

    # adaptation (LR size): the input buffers, son_up (and lr_up, made with it when the
    # upscale runs whole), then the backend's working memory
    adapt_mode, adapt_tile, adapt_tiles, adapt_batch, adapt_bytes = "none", None, 0, 1, 0
    if steps > 0:
        fixed = _bytes(lr_px, IMAGE_BYTES["lr"] + IMAGE_BYTES["son_up"]) + const
        if up_tile is None:
            fixed += _bytes(hr_px, IMAGE_BYTES["lr_up"])
        whole = fixed + _bytes(lr_px, memory_per_pixel(backend, "adapt"))
        bpp = memory_per_pixel(backend, "region_grads")
        if adapt_on == "crops":
            adapt_mode = "crops"
            adapt_tile = min(crop_size, h), min(crop_size, w)
            per_crop = _bytes(_region_px(h, w, *adapt_tile), bpp)
            adapt_batch = int(min(n_crops, (budget - fixed) // per_crop))
            if adapt_batch < 1:
                need.append(("adaptation on crops", fixed + per_crop))
            adapt_bytes = fixed + max(adapt_batch, 1) * per_crop
        elif whole <= budget:
            adapt_mode, adapt_bytes, adapt_tiles = "whole", whole, 1
        else:
            t = _fit_tile(h, w, budget - fixed, bpp)
            if t is None:
                need.append(("adaptation", fixed + _bytes(_region_px(h, w, MIN_TILE, MIN_TILE), bpp)))
            else:
                adapt_mode, adapt_tile = "tiled", t
                adapt_tiles = len(tiles(h, w, t))
                adapt_bytes = fixed + _bytes(_region_px(h, w, *t), bpp)

    convert = _bytes(lr_px, IMAGE_BYTES["lr"]) + _bytes(hr_px, IMAGE_BYTES["hr_out"] + IMAGE_BYTES["hr_convert"])
    if convert > budget:
        need.append(("the output conversion", convert))
    refine = (REFINE_BYTES["ensemble"] if ensemble else 0) + (REFINE_BYTES["back_projection"] if back_projection else 0)
    if refine and _bytes(hr_px, refine + IMAGE_BYTES["hr_out"]) > budget:
        what = " and ".join(n.replace("_", "-") for n, on in (("ensemble", ensemble), ("back_projection", back_projection)) if on)
        need.append((f"the {what} (whole output, not tiled)", _bytes(hr_px, refine + IMAGE_BYTES["hr_out"])))
    if need:
        what, n = max(need, key=lambda t: t[1])
        raise ValueError(
            f"max_memory of {_fmt(budget)} ({budget_source}) is too small for a {h}x{w} image at scale {scale}: "
            f"{what} needs at least {_fmt(n)}")
    return Plan(budget, budget_source, adapt_mode, adapt_tile, adapt_tiles, adapt_batch, adapt_bytes,
                up_tile, up_tiles, up_bytes, convert)


def _fmt(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
