"""The network chain, written once: forward, gradients (optionally restricted to a region's
interior) and the SGD step of the 8-layer residual net, over per-layer op functions.

Every Python path of the network goes through here:

* ``ops`` = :mod:`mzsr_fast.reference` (plain PyTorch, NHWC): the oracle
  (``reference.net_forward`` / ``net_backward`` / ``adapt_step``), and the masked
  gradients of tiled and crop adaptation on backends without their own kernels;
* ``ops`` = ``torch.ops.mzsr_fast`` (the compiled per-layer ops, same names and
  signatures, NHWC): the masked gradients of the cpu and cuda backends;
* ``ops`` = :data:`NCHW` (``F.conv2d`` on NCHW / channels_last tensors, autograd-friendly):
  :func:`mzsr_fast.model.forward`, ``MZSRNet``, the reference backend (its gradients are
  autograd's through this forward) and ZSSR (bias-free, any depth).

The native backends (cpu ``net_grads`` / ``adapt_step``, cuda ``cuda_net_grads``, the
Triton kernel sequence) keep their fused chains; ``tests/test_chain.py`` holds each one
against :func:`grads` here.

Parameters are a flat list ``plist = [w0, b0, ..., w{n-1}, b{n-1}]`` (weights
``(Cout, Cin, 3, 3)``, biases ``(Cout,)`` or None); :func:`plist_of` makes it from the
``layers.{i}.weight/bias`` dict of :mod:`mzsr_fast.model`.  This module imports only torch
and the tile geometry (:mod:`mzsr_fast.tiles`, a leaf).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from .tiles import boxes_of

__all__ = ["NCHW", "plist_of", "grads_dict", "forward", "backward", "grads", "step_", "adapt_step"]


class _TorchNCHW:
    """The forward op on NCHW tensors (any memory format) with ``F.conv2d``, for autograd."""

    @staticmethod
    def conv3x3_fwd(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, relu: bool,
                    residual: torch.Tensor | None = None) -> torch.Tensor:
        """``[relu](conv3x3(x, w) + b) [+ residual]``; x ``(N, Cin, H, W)`` -> ``(N, Cout, H, W)``."""
        y = F.conv2d(x, w, b, padding=1)
        if relu:
            y = F.relu(y)
        if residual is not None:
            y = y + residual
        return y


#: forward op set on NCHW tensors (no backward ops: gradients come from autograd)
NCHW = _TorchNCHW()


def plist_of(params: Mapping[str, torch.Tensor]) -> list[torch.Tensor | None]:
    """``{"layers.{i}.weight", "layers.{i}.bias"}`` -> ``[w0, b0, ..., w7, b7]`` (b None when absent)."""
    n = sum(k.endswith(".weight") for k in params)
    out: list[torch.Tensor | None] = []
    for i in range(n):
        out += [params[f"layers.{i}.weight"], params.get(f"layers.{i}.bias")]
    return out


def grads_dict(glist: Sequence[torch.Tensor], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """``[gw0, gb0, ...]`` -> ``{name: grad}`` for the parameter ``names`` present (a
    bias-free net drops the bias gradients)."""
    out = {}
    for i in range(len(glist) // 2):
        for j, k in enumerate((f"layers.{i}.weight", f"layers.{i}.bias")):
            if k in names:
                out[k] = glist[2 * i + j]
    return {k: out[k] for k in names}


def forward(ops, plist: Sequence[torch.Tensor | None], x: torch.Tensor, *, residual: bool = True,
            keep: bool = False):
    """``x + net(x)`` (``net(x)`` with ``residual=False``): layer ``i`` is
    ``ops.conv3x3_fwd(h, w_i, b_i, relu=i < n - 1, residual=x on the last layer)``.

    x: the ops' layout (NHWC for the reference and compiled ops, NCHW for :data:`NCHW`).
    Returns the output, or with ``keep=True`` every activation: ``acts[0] = x``,
    ``acts[i + 1]`` = output of layer ``i`` (``acts[-1]`` the output).
    """
    n = len(plist) // 2
    acts = [x]
    h = x
    for i in range(n):
        last = i == n - 1
        h = ops.conv3x3_fwd(h, plist[2 * i], plist[2 * i + 1], not last, x if (last and residual) else None)
        if keep:
            acts.append(h)
    return acts if keep else h


def _masked_l1(out: torch.Tensor, target: torch.Tensor, boxes, numel: int):
    """Loss and output gradient of ``sum_interiors |out - target| / numel`` (NHWC, out's dtype)."""
    g = torch.zeros(out.shape, dtype=out.dtype, device=out.device)
    loss = torch.zeros((), dtype=out.dtype, device=out.device)
    for j, (y0, y1, x0, x1) in enumerate(boxes):
        d = out[j, y0:y1, x0:x1] - target[j, y0:y1, x0:x1]
        loss = loss + d.abs().sum()
        # autograd's d|d|/dd is sign(d) (0 at 0), as reference.l1_loss_grad
        g[j, y0:y1, x0:x1] = torch.sign(d) / numel
    return loss / numel, g


def backward(ops, plist: Sequence[torch.Tensor | None], acts: list[torch.Tensor], gout: torch.Tensor
             ) -> list[torch.Tensor]:
    """``[gw0, gb0, ..., gw7, gb7]`` from the activations ``acts[:-1]`` (inputs of each
    layer; popped as the backward pass leaves them) and ``gout`` = d loss / d output:
    per layer from the last, ``conv3x3_wgrad(input, g)`` then ``g = conv3x3_dgrad(g, w, input)``
    (the ReLU mask of the layer's input)."""
    n = len(plist) // 2
    out: list[torch.Tensor] = [None] * (2 * n)  # type: ignore[list-item]
    g = gout
    for i in range(n - 1, -1, -1):
        a = acts.pop()
        out[2 * i], out[2 * i + 1] = ops.conv3x3_wgrad(a, g)
        if i > 0:
            g = ops.conv3x3_dgrad(g, plist[2 * i], a)
        del a
    return out


def grads(ops, plist: Sequence[torch.Tensor | None], x: torch.Tensor, target: torch.Tensor, box=None,
          numel: int | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Loss and gradients of the L1 loss of ``x + net(x)`` against ``target``, no update.

    x, target: ``(N, h, w, 3)`` NHWC float32.  ``box`` None: the whole image, ``loss =
    mean|out - target|`` (``ops.l1_loss_grad``).  ``box`` ``(y0, y1, x0, x1)`` (the
    interior in region coordinates) or one such box per batch element: the loss restricted
    to the interiors, ``sum |out - target| / numel`` with ``numel`` the element count of
    the *whole* target the regions were cut from (exact tiling, :mod:`mzsr_fast.tiles`).
    Returns ``(loss, [gw0, gb0, ..., gw7, gb7])`` (0-d float32; summed over the batch).
    Activations are dropped as soon as the backward pass is past them (peak: the stored
    activations + two gradient maps).
    """
    acts = forward(ops, plist, x, keep=True)
    out = acts.pop()
    if box is None:
        loss, g = ops.l1_loss_grad(out, target)
    else:
        loss, g = _masked_l1(out, target, boxes_of(box, x.shape[0]), int(numel if numel is not None
                                                                          else target.numel()))
    del out
    return loss, backward(ops, plist, acts, g)


def step_(plist: Sequence[torch.Tensor | None], glist: Sequence[torch.Tensor | None], lr) -> None:
    """The SGD step ``p -= lr * g`` in place (None entries skipped).

    ``lr`` a Python float: ``p.sub_(g, alpha=lr)`` (one fused multiply-subtract); a 0-d
    tensor on the device: ``p.sub_(g * lr)`` (the rounding of the compiled
    ``sgd_update_``, and replayable in a CUDA graph).  The two differ in the last bit;
    each caller keeps the one it always had (tests/test_bitwise_outputs.py)."""
    for p, g in zip(plist, glist):
        if p is None or g is None:
            continue
        if isinstance(lr, torch.Tensor):
            p.sub_(g * lr)
        else:
            p.sub_(g, alpha=float(lr))


def adapt_step(ops, plist: Sequence[torch.Tensor], x: torch.Tensor, target: torch.Tensor,
               lr: torch.Tensor) -> torch.Tensor:
    """One SGD step of the whole-image L1 loss with ``ops`` (:func:`grads` + ``ops.sgd_update_``),
    in place; returns the loss before the update (0-d)."""
    loss, g = grads(ops, plist, x, target)
    ops.sgd_update_(plist, g, lr)
    return loss
