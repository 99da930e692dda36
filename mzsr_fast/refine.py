"""Test-time refinements of an upscale, shared by MZSR (:mod:`mzsr_fast.run`) and ZSSR:
iterative back-projection and the 8-frame geometric self-ensemble.

* :func:`back_projection`: ``y <- clip(y + imresize(lr - degrade(y), y size))``, the
  degradation being the image's own (kernel, subsampling), so each round pulls the SR toward
  consistency with the LR it came from (Irani & Peleg 1991; ZSSR's ``back_projection``).
* :func:`self_ensemble`: the prediction in the 8 rot90 x mirror frames of the LR, each
  undone, combined per pixel by the median (ZSSR's ``final_test``).  With ``direct``
  subsampling (``[0::s]``) a frame whose axis runs backwards sees the LR grid ``s - 1`` HR
  pixels off; :func:`frame_shift` shifts its output back before undoing the frame.

Shapes: ``lr (1, 3, h, w)``, ``y (1, 3, s h, s w)`` float32 in [0, 1].
"""
from __future__ import annotations

from typing import Callable

import torch

from .degradation import degrade, imresize

__all__ = ["back_projection", "back_project", "self_ensemble", "frame", "unframe", "frame_shift", "shift", "median0"]


def _down(y: torch.Tensor, kernel, scale: int, subsampling: str) -> torch.Tensor:
    """The degradation (the same as ``degrade``): kernel -> ``subsampling``; none -> bicubic."""
    if kernel is None:
        return degrade(y, None, scale, "bicubic")
    return degrade(y, kernel, scale, subsampling)


def back_projection(y: torch.Tensor, lr: torch.Tensor, kernel, scale: int, subsampling: str = "direct") -> torch.Tensor:
    """One round: ``clip(y + imresize(lr - degrade(y), y size), 0, 1)``; a new tensor."""
    res = lr - _down(y, kernel, scale, subsampling)
    return (y + imresize(res, output_shape=tuple(y.shape[-2:]))).clamp_(0, 1)


def back_project(y: torch.Tensor, lr: torch.Tensor, kernel, scale: int, subsampling: str, rounds: int) -> torch.Tensor:
    """``rounds`` rounds of :func:`back_projection` (0: ``y`` itself)."""
    for _ in range(int(rounds)):
        y = back_projection(y, lr, kernel, scale, subsampling)
    return y


def frame(x: torch.Tensor, k: int) -> torch.Tensor:
    """``np.rot90(x, k)`` for k < 4, ``np.fliplr(np.rot90(x, k))`` otherwise (on H, W)."""
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return y.flip(-1) if k >= 4 else y


def unframe(y: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`frame`."""
    if k >= 4:
        y = y.flip(-1)
    return torch.rot90(y, -(k % 4), dims=(-2, -1))


def _reversed_axes(k: int) -> tuple[bool, bool]:
    """Whether frame k's (row, column) axis runs against the original axis it comes from."""
    r, c = torch.meshgrid(torch.arange(2.0), torch.arange(2.0), indexing="ij")
    t = frame(torch.stack([r, c]), k)  # (2, 2, 2): original (row, col) of each frame pixel
    d_row = t[:, 1, 0] - t[:, 0, 0]
    d_col = t[:, 0, 1] - t[:, 0, 0]
    return bool(d_row.sum() < 0), bool(d_col.sum() < 0)


def frame_shift(k: int, scale: int, subsampling: str | None) -> tuple[int, int]:
    """HR-pixel shift ``(rows, cols)`` to apply to a ``[0::s]``-grid prediction made in frame k
    so it aligns with that frame's HR: ``s - 1`` along reversed axes for direct subsampling,
    0 for bicubic (symmetric) subsampling.  ``aligned[x] = pred[x - shift]``."""
    if subsampling != "direct":
        return 0, 0
    rr, rc = _reversed_axes(k)
    return (scale - 1) * rr, (scale - 1) * rc


def shift(y: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``out[i, j] = y[i - dy, j - dx]`` (dy, dx >= 0), edge rows/columns replicated."""
    if dy:
        y = torch.cat([y[..., :1, :].expand(*y.shape[:-2], dy, y.shape[-1]), y[..., :-dy, :]], dim=-2)
    if dx:
        y = torch.cat([y[..., :, :1].expand(*y.shape[:-1], dx), y[..., :, :-dx]], dim=-1)
    return y


def median0(stack: torch.Tensor) -> torch.Tensor:
    """``np.median(stack, 0)``: the mean of the two middle values for an even count."""
    n = stack.shape[0]
    s = stack.sort(dim=0).values
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def self_ensemble(
    predict: Callable[[torch.Tensor], torch.Tensor],
    lr: torch.Tensor,
    scale: int,
    kernel=None,
    subsampling: str = "direct",
    *,
    flips: bool = True,
    bp_iters: int = 10,
    align: bool = True,
    progress=None,
    first: torch.Tensor | None = None,
) -> torch.Tensor:
    """``predict`` in 8 rot90 x mirror frames (1 if not ``flips``), undo each frame,
    back-project each ``bp_iters`` times, per-pixel median, back-project ``bp_iters`` more
    times (ZSSR's ``final_test``; ``bp_iters=0`` is the plain median of the frames).

    predict: frame LR ``(1, 3, h, w)`` -> frame SR ``(1, 3, s h, s w)`` (clipped).
    lr: ``(1, 3, H, W)`` float32.  Returns ``(1, 3, sH, sW)`` float32 in [0, 1].
    ``align`` shifts outputs of axis-reversed frames back (see :func:`frame_shift`);
    ``progress``: anything with ``update(1)``, called once per frame; ``first``: the
    prediction of frame 0 (the identity) if it is already made.
    """
    sub = subsampling if kernel is not None else "bicubic"
    outs = []
    for k in range(0, 8 if flips else 1):
        y = first if k == 0 and first is not None else predict(frame(lr, k))
        if align:
            y = shift(y, *frame_shift(k, scale, sub))
        y = back_project(unframe(y, k), lr, kernel, scale, sub, bp_iters)
        outs.append(y)
        if progress is not None:
            progress.update(1)
    y = median0(torch.stack(outs)) if len(outs) > 1 else outs[0]
    return back_project(y, lr, kernel, scale, sub, bp_iters)
