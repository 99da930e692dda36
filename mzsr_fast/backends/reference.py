"""Reference backend: plain PyTorch autograd on NCHW tensors.  The oracle of every fast
backend and the baseline of every benchmark (cuDNN on GPU, oneDNN on CPU)."""
from __future__ import annotations

import contextlib
from typing import Mapping, Sequence

import torch

from .. import model
from .base import Backend


@contextlib.contextmanager
def _matmul_precision(device: torch.device, precision: str):
    """Set TF32 use for the duration of a call and restore the caller's flags."""
    if device.type != "cuda":
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


class ReferenceBackend(Backend):
    name = "reference"
    precisions = ("fp32", "tf32", "bf16")

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

    def _loss(self, params, x, target):
        with self._autocast():
            out = model.forward(params, self._fmt(x))
        return (out.float() - target).abs().mean()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), _matmul_precision(self.device, self.precision), self._autocast():
            return model.forward(self._p, self._fmt(x)).float().contiguous()

    def grads(self, x, target):
        with _matmul_precision(self.device, self.precision):
            leaves = {k: v.detach().requires_grad_(True) for k, v in self._p.items()}
            loss = self._loss(leaves, x, target)
            g = torch.autograd.grad(loss, list(leaves.values()))
        return loss.detach(), dict(zip(leaves.keys(), g))

    def step(self, x, target, lr: float) -> torch.Tensor:
        loss, g = self.grads(x, target)
        with torch.no_grad():
            for k, p in self._p.items():
                p.sub_(g[k], alpha=lr)
        return loss

    def params(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self._p.items()}
