"""Reference backend: plain PyTorch autograd on NCHW tensors through the chain's forward
(:func:`mzsr_fast.chain.forward` with the ``F.conv2d`` ops).  The oracle of every fast
backend and the baseline of every benchmark (cuDNN on GPU, oneDNN on CPU)."""
from __future__ import annotations

import contextlib
from typing import Mapping, Sequence

import torch

from .. import chain
from .base import Backend, matmul_precision

__all__ = ["ReferenceBackend"]

#: the name before issue 19 (moved to backends.base)
_matmul_precision = matmul_precision


class ReferenceBackend(Backend):
    name = "reference"
    precisions = ("fp32", "tf32", "bf16")
    masked_grads = "reference ops"

    def __init__(self, device="cpu", precision="fp32", channels_last: bool = False):
        super().__init__(device, precision)
        self.channels_last = channels_last
        self._p: dict[str, torch.Tensor] = {}

    def prepare(self, params: Mapping[str, torch.Tensor], shape: Sequence[int]) -> None:
        self._p = {k: v.detach().to(self.device, torch.float32).clone() for k, v in params.items()}

    def _fmt(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _net(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return chain.forward(chain.NCHW, chain.plist_of(params), self._fmt(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), matmul_precision(self.device, self.precision):
            return self._net(self._p, x).float().contiguous()

    def grads(self, x, target, box=None, numel=None):
        """Whole image: autograd through the chain's forward; with a ``box``: the chain's
        gradients over the reference ops (NHWC, float32; :meth:`Backend.masked_grads_fallback`)."""
        if box is not None:
            return self.masked_grads_fallback(x, target, box, numel)
        with matmul_precision(self.device, self.precision):
            leaves = {k: v.detach().requires_grad_(True) for k, v in self._p.items()}
            loss = (self._net(leaves, x).float() - target).abs().mean()
            g = torch.autograd.grad(loss, list(leaves.values()))
        return loss.detach(), dict(zip(leaves.keys(), g))

    def step(self, x, target, lr: float) -> torch.Tensor:
        loss, g = self.grads(x, target)
        with torch.no_grad():
            chain.step_(list(self._p.values()), [g[k] for k in self._p], float(lr))
        return loss

    def apply_grads(self, grads, lr: float) -> None:
        """``p -= lr * g`` rounded as ``g * lr`` then the subtraction (0-d tensor lr in
        :func:`mzsr_fast.chain.step_`; the arithmetic tiled adaptation always had here)."""
        with torch.no_grad():
            lr_t = torch.tensor(float(lr), dtype=torch.float32, device=self.device)
            chain.step_(list(self._p.values()), [grads[k].to(self.device, torch.float32) for k in self._p], lr_t)

    def params(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self._p.items()}
