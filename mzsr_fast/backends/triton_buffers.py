"""Buffers of the Triton backend (:mod:`mzsr_fast.backends.triton`): the flat parameter
layout and its views (master copy + the kernels' operand copies), and the preallocated
activation / gradient buffers of an adaptation step and of a forward pass at one shape."""
from __future__ import annotations

import torch

from .. import model

_CH = model.CHANNELS
_NL = len(_CH)


def _kernels():
    from ..kernels import conv3x3 as K  # imported lazily: triton is optional

    return K


class _Layout:
    """Offsets of each layer in the flat parameter buffer."""

    def __init__(self):
        self.off, self.size = [], []
        o = 0
        for ci, co in _CH:
            self.off.append(o)
            self.size.append(9 * ci * co + co)
            o += 9 * ci * co + co
        self.total = o


_LAYOUT = _Layout()


class _Params:
    """Views of the layers in one flat fp32 buffer (the master copy, ``[tap][ci][co]``
    weights + biases) and, optionally, in the kernels' operand copies, same offsets, in the
    activation dtype: ``tflat`` for the forward (``[tap][co][ci]``, K-major B) and
    ``dflat`` for the input gradient (``[tap][ci][co]``; a bf16 copy halves the weight
    traffic of the bf16 path)."""

    def __init__(self, flat: torch.Tensor, tflat: torch.Tensor | None = None, dflat: torch.Tensor | None = None):
        self.flat = flat
        self.tflat = tflat
        self.dflat = dflat
        self.layer, self.wf, self.b, self.wt, self.wd = [], [], [], [], []
        for i, (ci, co) in enumerate(_CH):
            o, p = _LAYOUT.off[i], _LAYOUT.size[i]
            self.layer.append(flat[o:o + p])
            self.wf.append(flat[o:o + 9 * ci * co])
            self.b.append(flat[o + 9 * ci * co:o + p])
            if tflat is not None:
                self.wt.append(tflat[o:o + 9 * ci * co])
                self.wd.append(dflat[o:o + 9 * ci * co])

    def refresh_copies(self) -> None:
        """Operand copies <- master (after an update outside the fused reduction)."""
        K = _kernels()
        for i, (ci, co) in enumerate(_CH):
            K.refresh_fwd_weight(self.wf[i], self.wt[i], ci, co)
            self.wd[i].copy_(self.wf[i])

    def clone(self) -> "_Params":
        if self.tflat is None:
            return _Params(self.flat.clone())
        return _Params(self.flat.clone(), self.tflat.clone(), self.dflat.clone())


class _AdaptPlan:
    """Preallocated buffers of the adaptation at one input shape (N, 3, H, W)."""

    def __init__(self, shape, device, precision):
        K = _kernels()
        n, _, h, w = shape
        self.shape = tuple(shape)
        self.m = m = n * h * w
        adt = K.act_dtype(precision)
        kw = dict(device=device)
        self.x = torch.empty(n, h, w, 3, dtype=torch.float32, **kw)
        self.x_act = self.x if adt == torch.float32 else torch.empty(n, h, w, 3, dtype=adt, **kw)
        self.target = torch.empty(n, h, w, 3, dtype=torch.float32, **kw)
        # acts[i] = input of layer i (acts[0] = x); acts[1..7] are ReLU outputs
        self.acts = [self.x_act] + [torch.empty(n, h, w, co, dtype=adt, **kw) for _, co in _CH[:-1]]
        self.gout = torch.empty(n, h, w, 3, dtype=adt, **kw)
        self.gbuf = [torch.empty(n, h, w, 64, dtype=adt, **kw) for _ in range(2)]
        self.splits = [K.wgrad_splits(m, ci, torch.device(device)) for ci, _ in _CH]
        ws_len = max(s * _LAYOUT.size[i] for i, (s, _) in enumerate(self.splits))
        self.ws = torch.empty(ws_len, dtype=torch.float32, **kw)
        self.n_parts = K.l1_loss_parts(m, _CH[-1][0], _CH[-1][1], precision)
        self.loss_parts = torch.zeros(self.n_parts, dtype=torch.float32, **kw)
        self.inv_numel = 1.0 / (m * 3)

    def ws_view(self, i: int) -> torch.Tensor:
        s = self.splits[i][0]
        p = _LAYOUT.size[i]
        return self.ws[: s * p].view(s, p)

    def load(self, x: torch.Tensor, target: torch.Tensor) -> None:
        self.x.copy_(x.permute(0, 2, 3, 1))
        if self.x_act is not self.x:
            self.x_act.copy_(self.x)
        self.target.copy_(target.permute(0, 2, 3, 1))


class _FwdPlan:
    """Buffers of a forward-only pass (upscale) at one shape: two ping-pong activations."""

    def __init__(self, shape, device, precision):
        K = _kernels()
        n, _, h, w = shape
        adt = K.act_dtype(precision)
        self.x = torch.empty(n, h, w, 3, dtype=torch.float32, device=device)
        self.x_act = self.x if adt == torch.float32 else torch.empty(n, h, w, 3, dtype=adt, device=device)
        self.bufs = [torch.empty(n, h, w, 64, dtype=adt, device=device) for _ in range(2)]
        self.y = torch.empty(n, h, w, 3, dtype=torch.float32, device=device)

    def load(self, x: torch.Tensor) -> None:
        self.x.copy_(x.permute(0, 2, 3, 1))
        if self.x_act is not self.x:
            self.x_act.copy_(self.x)
