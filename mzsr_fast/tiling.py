"""Exact tiling of adaptation and upscaling, and the memory budget that chooses tiles.

Why tiles are exact
-------------------
The network is 8 conv3x3 layers (SAME zero padding), so an output pixel depends on the
input within ``HALO = 8`` pixels of it.  A tile is an *interior* rectangle inside a
*region* that reaches at least 8 pixels past it on each side, or to the real image border:
at the border nothing is added, so the network sees the same zero padding there as on the
whole image.  (All regions of a call have one shape: near the border a region is shifted
inward rather than cut, which only adds context.)

* Forward: the interior of ``forward(region)`` equals the untiled forward there.
* Adaptation: the loss of the whole image is a sum over pixels,
  ``L = sum_p |f(x)_p - t_p| / numel``.  For one tile, restrict the sum to its interior
  (still divided by the *whole* image's ``numel``).  Its gradient with respect to the
  output of layer ``l`` (0-based, 8 layers) is nonzero only within ``interior + (7 - l)``;
  the weight gradient of layer ``l`` reads the layer's input there plus 1 pixel, i.e.
  within ``interior + (8 - l)``, and the input of layer ``l`` computed on the region is
  exact within ``region - l = interior + (8 - l)`` (each layer spoils one more pixel at a
  region edge that is not the image border).  So every per-tile gradient is exact, and
  since the interiors partition the image, their sum is the untiled gradient (and the sum
  of the per-tile losses is the untiled loss).  One SGD update per step follows.

The per-tile gradient is :meth:`mzsr_fast.backends.base.Backend.region_grads` (default:
the reference ops in float32, through :func:`region_grads_ops`; a backend may override it);
the update is :meth:`~mzsr_fast.backends.base.Backend.apply_grads`.  Forward tiles use the
backend's own ``upscale`` (its forward; one region shape per call, so a GPU backend
allocates one buffer set and captures one graph).  The bicubic upsampling ``lr_up`` of
the upscale input is made per tile too (``imresize`` of an LR crop with a 4-pixel margin,
exact for the same reason: the cubic kernel reaches 2 LR pixels), so the full-size
``lr_up`` never exists.

Memory model
------------
:func:`plan` estimates the bytes of each phase (adaptation, upscaling, conversion back to
the caller's kind) as

    image buffers  +  bytes_per_pixel(backend, kind) * pixels worked on at once  +  constant

with ``Backend.memory_per_pixel(kind)`` (kinds ``forward``, ``adapt``, ``region_grads``;
measured, see ``benchmarks/bench_large.py --calibrate``) and the image buffers of
:data:`IMAGE_BYTES` (float32 copies alive during the call).  :func:`plan` picks, per
phase, no tiling when the whole image fits the budget, else the largest tile that fits.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Sequence

import torch

from . import model
from .degradation import imresize

__all__ = [
    "HALO",
    "Tile",
    "tiles",
    "make_tile",
    "region_shape",
    "region_grads_ops",
    "tiled_forward",
    "upscale",
    "adapt",
    "adapt_on_crops",
    "parse_memory",
    "default_budget",
    "Plan",
    "plan",
]

#: receptive-field radius of the net: one pixel per 3x3 layer
HALO = len(model.CHANNELS)
#: LR margin of a per-tile bicubic upsampling (the cubic kernel reaches 2 LR pixels; +2 spare)
RESIZE_MARGIN = 4
#: smallest tile interior the planner uses (px); explicit tiles may be smaller (even < HALO)
MIN_TILE = 16


# ----------------------------------------------------------------------------- tiles
@dataclasses.dataclass(frozen=True)
class Tile:
    """One tile: interior ``[y0, y1) x [x0, x1)`` and its region (interior + halo, clipped to
    the image) ``[ry0, ry1) x [rx0, rx1)``, in image coordinates."""

    y0: int
    y1: int
    x0: int
    x1: int
    ry0: int
    ry1: int
    rx0: int
    rx1: int

    @property
    def region(self) -> tuple[slice, slice]:
        return slice(self.ry0, self.ry1), slice(self.rx0, self.rx1)

    @property
    def interior(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The interior in region coordinates: ``(y0, y1, x0, x1)``."""
        return self.y0 - self.ry0, self.y1 - self.ry0, self.x0 - self.rx0, self.x1 - self.rx0


def _spans(n: int, t: int) -> list[tuple[int, int]]:
    """Split ``[0, n)`` into ``ceil(n / t)`` spans of near-equal length (at most ``t``)."""
    k = -(-n // t)
    edges = [round(i * n / k) for i in range(k + 1)]
    return [(edges[i], edges[i + 1]) for i in range(k)]


def _tile_hw(tile) -> tuple[int, int]:
    if isinstance(tile, int) and not isinstance(tile, bool):
        th = tw = tile
    else:
        try:
            th, tw = (int(v) for v in tile)
        except (TypeError, ValueError):
            raise TypeError(f"tile must be an int or a (height, width) pair, got {tile!r}") from None
    if th < 1 or tw < 1:
        raise ValueError(f"tile sizes must be >= 1, got {tile!r}")
    return th, tw


def _window(a: int, b: int, n: int, size: int, halo: int) -> tuple[int, int]:
    """A window of ``size`` (<= n) inside ``[0, n)`` that contains ``[a - halo, b + halo)``
    clipped to ``[0, n)`` (needs ``size >= min(n, b - a + 2 * halo)``)."""
    lo = min(max(0, a - halo), n - size)
    return lo, lo + size


def make_tile(y0: int, y1: int, x0: int, x1: int, h: int, w: int, region_hw: tuple[int, int],
              halo: int = HALO) -> Tile:
    """The tile of interior ``[y0, y1) x [x0, x1)`` with a region of ``region_hw`` pixels."""
    ry0, ry1 = _window(y0, y1, h, region_hw[0], halo)
    rx0, rx1 = _window(x0, x1, w, region_hw[1], halo)
    return Tile(y0, y1, x0, x1, ry0, ry1, rx0, rx1)


def region_shape(h: int, w: int, th: int, tw: int, halo: int = HALO) -> tuple[int, int]:
    """Region size of tiles of at most ``th x tw`` interior pixels: the interior plus the
    halo on both sides, clipped to the image."""
    return min(h, th + 2 * halo), min(w, tw + 2 * halo)


def tiles(h: int, w: int, tile, halo: int = HALO) -> list[Tile]:
    """The tiles of an ``h x w`` image: interiors of at most ``tile`` (int or ``(th, tw)``)
    pixels that partition the image, each inside a region reaching at least ``halo``
    pixels past it (or to the image border).  All regions have the same shape (near the
    border a region is shifted inward rather than cut), so a backend sees one input shape
    per call (one buffer set, one captured graph)."""
    th, tw = _tile_hw(tile)
    ys, xs = _spans(h, th), _spans(w, tw)
    rh = region_shape(h, w, max(b - a for a, b in ys), max(b - a for a, b in xs), halo)
    return [make_tile(y0, y1, x0, x1, h, w, rh, halo) for y0, y1 in ys for x0, x1 in xs]


# ----------------------------------------------------------------------------- gradients
def boxes_of(box, n: int) -> list[tuple[int, int, int, int]]:
    """``box``: one ``(y0, y1, x0, x1)`` for all ``n`` batch elements, or ``n`` of them."""
    if len(box) == 4 and all(isinstance(v, int) for v in box):
        return [tuple(box)] * n  # type: ignore[list-item]
    out = [tuple(int(v) for v in b) for b in box]
    if len(out) != n or any(len(b) != 4 for b in out):
        raise ValueError(f"box must be (y0, y1, x0, x1) or one such box per batch element ({n}), got {box!r}")
    return out  # type: ignore[return-value]


def region_grads_ops(ops, plist: Sequence[torch.Tensor | None], x: torch.Tensor, target: torch.Tensor,
                     box, numel: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Loss and gradients of a region (or a batch of equally shaped regions), from per-layer
    ops (:mod:`mzsr_fast.reference` or ``torch.ops.mzsr_fast``, same names and signatures).

    plist: ``[w0, b0, ..., w7, b7]`` (biases may be None); x, target: ``(N, h, w, 3)``
    NHWC float32 (the regions); box: ``(y0, y1, x0, x1)``, the interior in region
    coordinates, or one such box per batch element; numel: the element count of the
    *whole* target.  Returns ``(loss, grads)``: ``loss = sum_interiors |x + net(x) -
    target| / numel`` (0-d f32) and ``[gw0, gb0, ..., gw7, gb7]`` (summed over the batch).
    Activations are dropped as soon as the backward pass is past them (peak: the stored
    activations + two gradient maps).
    """
    boxes = boxes_of(box, x.shape[0])
    n = len(plist) // 2
    acts = [x]
    h = x
    for i in range(n):
        last = i == n - 1
        h = ops.conv3x3_fwd(h, plist[2 * i], plist[2 * i + 1], not last, x if last else None)
        acts.append(h)
    out = acts.pop()
    g = torch.zeros(out.shape, dtype=torch.float32, device=x.device)
    loss = torch.zeros((), dtype=torch.float32, device=x.device)
    for j, (y0, y1, x0, x1) in enumerate(boxes):
        d = out[j, y0:y1, x0:x1] - target[j, y0:y1, x0:x1]
        loss = loss + d.abs().sum()
        # autograd's d|d|/dd is sign(d) (0 at 0), as reference.l1_loss_grad
        g[j, y0:y1, x0:x1] = torch.sign(d) / numel
    loss = loss / numel
    del out, d, h
    grads: list[torch.Tensor] = [None] * (2 * n)  # type: ignore[list-item]
    for i in range(n - 1, -1, -1):
        a = acts.pop()
        grads[2 * i], grads[2 * i + 1] = ops.conv3x3_wgrad(a, g)
        if i > 0:
            g = ops.conv3x3_dgrad(g, plist[2 * i], a)
        del a
    return loss, grads


# ----------------------------------------------------------------------------- forward
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


def _upsampled_region(lr: torch.Tensor, scale: int, ry0: int, ry1: int, rx0: int, rx1: int) -> torch.Tensor:
    """Rows ``[ry0, ry1)`` and columns ``[rx0, rx1)`` of ``imresize(lr, scale)`` (bicubic,
    output ``scale`` times the LR size), computed from an LR crop with a margin."""
    h, w = lr.shape[-2:]
    ly0, ly1 = max(0, ry0 // scale - RESIZE_MARGIN), min(h, -(-ry1 // scale) + RESIZE_MARGIN)
    lx0, lx1 = max(0, rx0 // scale - RESIZE_MARGIN), min(w, -(-rx1 // scale) + RESIZE_MARGIN)
    crop = lr[..., ly0:ly1, lx0:lx1]
    up = imresize(crop, output_shape=((ly1 - ly0) * scale, (lx1 - lx0) * scale))
    oy, ox = ly0 * scale, lx0 * scale
    return up[..., ry0 - oy:ry1 - oy, rx0 - ox:rx1 - ox].contiguous()


def upscale(be, lr: torch.Tensor, scale: int, tile=None, lr_up: torch.Tensor | None = None) -> torch.Tensor:
    """``clamp(be.upscale(imresize(lr, scale)), 0, 1)``; lr ``(N, 3, h, w)`` float32 ->
    ``(N, 3, scale*h, scale*w)``.  ``tile`` (output pixels, int or pair): the forward and
    the bicubic upsampling run per tile and the output is written in place; None: whole
    (``lr_up``: the upsampled input if already made)."""
    h, w = lr.shape[-2:]
    H, W = h * scale, w * scale
    if tile is None:
        return be.upscale(imresize(lr, output_shape=(H, W)) if lr_up is None else lr_up).clamp(0, 1)
    out = torch.empty(lr.shape[:-2] + (H, W), dtype=torch.float32, device=lr.device)
    for t in tiles(H, W, tile):
        y = be.upscale(_upsampled_region(lr, scale, t.ry0, t.ry1, t.rx0, t.rx1))
        by0, by1, bx0, bx1 = t.box
        out[(..., *t.interior)] = y[..., by0:by1, bx0:bx1].clamp_(0, 1)
        del y
    return out


# ----------------------------------------------------------------------------- adaptation
def _accumulate(acc: dict | None, g: dict) -> dict:
    if acc is None:
        return {k: v.clone() for k, v in g.items()}
    for k, v in g.items():
        acc[k].add_(v)
    return acc


def _tiled_step(be, x: torch.Tensor, target: torch.Tensor, regions: Sequence[Tile], numel: int, lr: float,
                batch: int = 1):
    """One SGD step from the gradients of ``regions`` (equal shapes) summed; ``batch``
    regions go through ``region_grads`` at once (x must then be a single image)."""
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
        li, g = be.region_grads(xs, ts, box, numel)
        acc = _accumulate(acc, g)
        loss = li if loss is None else loss + li
        del g, xs, ts
    be.apply_grads(acc, lr)
    return loss


def adapt(be, x: torch.Tensor, target: torch.Tensor, schedule: Sequence[float], tile=None) -> torch.Tensor:
    """``len(schedule)`` SGD steps of ``mean|x + net(x) - target|`` (the whole image);
    x, target ``(N, 3, h, w)`` float32.  ``tile`` None: ``be.adapt``; else each step sums
    the exact per-tile gradients (module docstring) and applies one update.  Returns the
    losses ``(k,)`` float32 (each before its step)."""
    if tile is None or len(schedule) == 0:
        return be.adapt(x, target, schedule)
    regions = tiles(x.shape[-2], x.shape[-1], tile)
    losses = [_tiled_step(be, x, target, regions, target.numel(), float(lr)) for lr in schedule]
    return torch.stack([v.reshape(()).float().cpu() for v in losses])


def adapt_on_crops(be, x: torch.Tensor, target: torch.Tensor, schedule: Sequence[float], *,
                   crop_size: int, n_crops: int, seed: int = 0, batch: int | None = None) -> torch.Tensor:
    """Adaptation on a random sample of crops instead of the whole image (large images).

    Each step draws ``n_crops`` crops of ``crop_size`` x ``crop_size`` LR pixels (clipped to
    the image) at uniform random positions (``torch.Generator`` seeded with ``seed``: the
    same crops for the same call), and takes one SGD step on the L1 loss averaged over the
    crops' pixels.  Each crop is computed with its halo, so its gradient is the full-image
    network's gradient restricted to the crop (no artificial zero padding at crop edges);
    the step is an unbiased-in-the-interior estimate of the full-image step.  ``batch``
    crops (default: all) go through ``region_grads`` at once (one call of larger ops, not
    many small ones).  x, target ``(1, 3, h, w)``.  Returns the losses ``(k,)`` float32
    (crop losses, each before its step)."""
    if x.shape[0] != 1:
        raise ValueError(f"adapt_on_crops takes one image (1, 3, h, w), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    ch, cw = min(crop_size, h), min(crop_size, w)
    gen = torch.Generator().manual_seed(int(seed))
    numel = n_crops * x.shape[0] * x.shape[1] * ch * cw
    rshape = region_shape(h, w, ch, cw)
    losses = []
    for lr in schedule:
        ys = torch.randint(0, h - ch + 1, (n_crops,), generator=gen).tolist()
        xs = torch.randint(0, w - cw + 1, (n_crops,), generator=gen).tolist()
        regions = [make_tile(y, y + ch, x0, x0 + cw, h, w, rshape) for y, x0 in zip(ys, xs)]
        losses.append(_tiled_step(be, x, target, regions, numel, float(lr), batch=batch or n_crops))
    if not losses:
        return torch.zeros(0)
    return torch.stack([v.reshape(()).float().cpu() for v in losses])


# ----------------------------------------------------------------------------- memory
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory(value) -> int:
    """``max_memory`` -> bytes.  An int (bytes) or a string such as ``"4GiB"``, ``"512 MiB"``,
    ``"1.5GB"`` (KiB/MiB/GiB/TiB are powers of 1024, kB/MB/GB/TB of 1000; case-insensitive).
    Raises TypeError for other types and ValueError for unknown units or values <= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"max_memory must be None, an int (bytes) or a string like '4GiB', got {type(value).__name__}")
    if isinstance(value, int):
        n = value
    else:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*", value)
        if not m:
            raise ValueError(f"max_memory {value!r} is not a number with an optional unit (e.g. '4GiB', '512MB')")
        unit = m.group(2).lower()
        if unit not in _UNITS:
            raise ValueError(f"max_memory {value!r}: unknown unit {m.group(2)!r} "
                             "(use B, kB, MB, GB, TB or KiB, MiB, GiB, TiB)")
        n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise ValueError(f"max_memory must be > 0 bytes, got {value!r}")
    return n


def default_budget(device: torch.device) -> tuple[int, str]:
    """(bytes, where from): half of the free memory of ``device`` -- ``MemAvailable`` of
    /proc/meminfo on the CPU, ``torch.cuda.mem_get_info`` on CUDA.  Half, because other
    processes and the caller's own data share it; 4 GiB where neither can be read."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free // 2, "half of free CUDA memory (torch.cuda.mem_get_info)"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2, "half of MemAvailable (/proc/meminfo)"
    except (OSError, ValueError, IndexError):
        pass
    return 4 * 2**30, "4 GiB (free memory unknown)"


#: float32 image-sized buffers (bytes per pixel, 3 channels x 4 bytes = 12) alive in each
#: phase of adapt_and_upscale, besides the tiles' working memory.  LR pixels: the input as
#: given plus its float32 copy (2 x 12), and in adaptation the son upsampled to LR size (12).
#: HR pixels: the bicubic ``lr_up`` (12; whole, or per tile region), the float32 output
#: (12); at the end the conversion back to the caller's kind
#: (io.from_internal: a clamped copy and a concatenated copy, then the caller's dtype)
#: adds up to 3 x 12.  Measured, not guessed: see benchmarks/bench_large.py.
IMAGE_BYTES = {"lr": 24, "son_up": 12, "lr_up": 12, "hr_out": 12, "hr_convert": 36}


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
    adapt_batch: int  # regions per region_grads call (crops go in batches)
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


def plan(be, h: int, w: int, scale: int, steps: int, budget: int, budget_source: str = "max_memory", *,
         adapt_on: str = "full", crop_size: int = 128, n_crops: int = 16) -> Plan:
    """Choose tiles for one ``h x w`` LR image so that each phase fits ``budget`` bytes.

    Phase bytes = image buffers (:data:`IMAGE_BYTES`) + ``be.memory_per_pixel(kind)`` x the
    pixels the backend works on at once + ``be.memory_per_pixel("const")``.  A phase runs
    whole when it fits, else on the largest tile that fits.  Raises ValueError when the
    image buffers alone, or with the smallest tile (16 px), exceed the budget.
    """
    lr_px, hr_px = h * w, h * w * scale * scale
    H, W = h * scale, w * scale
    const = be.memory_per_pixel("const")
    need = []

    # upscaling (HR size): the float32 output, written tile by tile when tiled
    fwd = be.memory_per_pixel("forward") + IMAGE_BYTES["lr_up"]  # per px: lr_up + the forward
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
        whole = fixed + _bytes(lr_px, be.memory_per_pixel("adapt"))
        bpp = be.memory_per_pixel("region_grads")
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
    if need:
        what, n = max(need, key=lambda t: t[1])
        raise ValueError(
            f"max_memory of {_fmt(budget)} ({budget_source}) is too small for a {h}x{w} image at scale {scale}: "
            f"{what} needs at least {_fmt(n)}")
    return Plan(budget, budget_source, adapt_mode, adapt_tile, adapt_tiles, adapt_batch, adapt_bytes,
                up_tile, up_tiles, up_bytes, convert)


def _fmt(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
