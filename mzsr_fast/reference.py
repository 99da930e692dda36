"""Pure-PyTorch reference of every fused op, under the same names and signatures as the
compiled (``torch.ops.mzsr_fast.*``) and Triton ops.  It is the oracle of the tests and
the fallback when no extension is built.  The network over these ops (``net_forward``,
``net_backward``, ``adapt_step``) is :mod:`mzsr_fast.chain` with ``ops`` = this module.

Layout conventions shared by every implementation of these ops:

* activations: ``(N, H, W, C)`` contiguous (NHWC) float32;
* weights: ``(Cout, Cin, 3, 3)`` (PyTorch OIHW), biases ``(Cout,)``;
* conv: 3x3, stride 1, zero padding 1 (SAME), i.e. ``F.conv2d(..., padding=1)``;
* learning rates: a 0-d float32 tensor on the device (so CUDA graphs can replay a
  schedule by rewriting it).
"""
from __future__ import annotations

import sys
from typing import Sequence

import torch
import torch.nn.functional as F

from . import chain

__all__ = [
    "conv3x3_fwd",
    "conv3x3_dgrad",
    "conv3x3_wgrad",
    "l1_loss_grad",
    "sgd_update_",
    "net_forward",
    "net_backward",
    "adapt_step",
]


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()


def conv3x3_fwd(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, relu: bool, residual: torch.Tensor | None = None
) -> torch.Tensor:
    """y = [relu](conv3x3(x, w) + b) [+ residual].

    x: (N, H, W, Cin) f32; w: (Cout, Cin, 3, 3); b: (Cout,) or None;
    residual: (N, H, W, Cout) or None.  Returns (N, H, W, Cout) f32.
    """
    y = F.conv2d(_nchw(x), w, b, padding=1)
    if relu:
        y = F.relu(y)
    y = _nhwc(y)
    if residual is not None:
        y = y + residual
    return y


def conv3x3_dgrad(gy: torch.Tensor, w: torch.Tensor, mask_src: torch.Tensor | None = None) -> torch.Tensor:
    """Input gradient of a 3x3 SAME conv, optionally times the ReLU mask ``mask_src > 0``.

    gy: (N, H, W, Cout); w: (Cout, Cin, 3, 3); mask_src: (N, H, W, Cin) (the layer's
    input, i.e. the previous layer's ReLU output) or None.  Returns (N, H, W, Cin).
    """
    gx = F.conv_transpose2d(_nchw(gy), w, padding=1)
    gx = _nhwc(gx)
    if mask_src is not None:
        gx = gx * (mask_src > 0).to(gx.dtype)
    return gx


def conv3x3_wgrad(x: torch.Tensor, gy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias gradients of a 3x3 SAME conv summed over the batch.

    x: (N, H, W, Cin); gy: (N, H, W, Cout).  Returns gw (Cout, Cin, 3, 3), gb (Cout,).
    """
    cin, cout = x.shape[-1], gy.shape[-1]
    gw = torch.nn.grad.conv2d_weight(_nchw(x), (cout, cin, 3, 3), _nchw(gy), padding=1)
    gb = gy.sum(dim=(0, 1, 2))
    return gw, gb


def l1_loss_grad(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """loss = mean(|pred - target|) (0-d), grad = sign(pred - target) / numel.

    ``sign(0) = 0``, as autograd's derivative of ``abs``.
    """
    d = pred - target
    return d.abs().mean(), torch.sign(d) / d.numel()


def sgd_update_(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], lr: torch.Tensor) -> None:
    """In place: ``p -= lr * g`` for every pair; lr a 0-d tensor on the params' device."""
    if len(params) != len(grads):
        raise ValueError(f"sgd_update_: {len(params)} params but {len(grads)} grads")
    for p, g in zip(params, grads):
        p.sub_(g * lr)


def net_forward(plist: Sequence[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """Forward of the 8-layer net from these ops (:func:`mzsr_fast.chain.forward`); returns
    every activation.  plist: [w0, b0, ..., w7, b7]; x: (N, H, W, 3) NHWC.  acts[0] = x,
    acts[i+1] = output of layer i; acts[-1] = x + net(x)."""
    return chain.forward(_this, plist, x, keep=True)


def net_backward(plist: Sequence[torch.Tensor], acts: Sequence[torch.Tensor], gout: torch.Tensor) -> list[torch.Tensor]:
    """Gradients [gw0, gb0, ..., gw7, gb7] given activations and d loss / d output
    (:func:`mzsr_fast.chain.backward`)."""
    return chain.backward(_this, plist, list(acts[:len(plist) // 2]), gout)


def adapt_step(plist: Sequence[torch.Tensor], x: torch.Tensor, target: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """One SGD step of the L1 loss of ``x + net(x)`` against ``target`` (both NHWC), in place
    (:func:`mzsr_fast.chain.adapt_step`).  Returns the loss before the update (0-d tensor)."""
    return chain.adapt_step(_this, plist, x, target, lr)


_this = sys.modules[__name__]
