"""Tile geometry (a leaf: no mzsr_fast imports): rectangles that partition an image, each
inside a region that reaches ``halo`` pixels past it.

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
  of the per-tile losses is the untiled loss).  One SGD update per step follows
  (:mod:`mzsr_fast.run`; the masked gradients are :func:`mzsr_fast.chain.grads`).
"""
from __future__ import annotations

import dataclasses

__all__ = ["HALO", "MIN_TILE", "Tile", "tiles", "make_tile", "region_shape", "boxes_of", "tile_hw"]

#: receptive-field radius of the net: one pixel per 3x3 layer (8 layers; tested against
#: ``model.CHANNELS``, not imported: this module is a leaf)
HALO = 8
#: smallest tile interior the planner uses (px); explicit tiles may be smaller (even < HALO)
MIN_TILE = 16


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


def tile_hw(tile) -> tuple[int, int]:
    """``tile`` (an int or a ``(height, width)`` pair) -> ``(th, tw)``; TypeError/ValueError."""
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
    th, tw = tile_hw(tile)
    ys, xs = _spans(h, th), _spans(w, tw)
    rh = region_shape(h, w, max(b - a for a, b in ys), max(b - a for a, b in xs), halo)
    return [make_tile(y0, y1, x0, x1, h, w, rh, halo) for y0, y1 in ys for x0, x1 in xs]


def boxes_of(box, n: int) -> list[tuple[int, int, int, int]]:
    """``box``: one ``(y0, y1, x0, x1)`` for all ``n`` batch elements, or ``n`` of them."""
    if len(box) == 4 and all(isinstance(v, int) for v in box):
        return [tuple(box)] * n  # type: ignore[list-item]
    out = [tuple(int(v) for v in b) for b in box]
    if len(out) != n or any(len(b) != 4 for b in out):
        raise ValueError(f"box must be (y0, y1, x0, x1) or one such box per batch element ({n}), got {box!r}")
    return out  # type: ignore[return-value]
