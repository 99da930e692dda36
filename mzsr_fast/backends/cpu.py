"""Native CPU backend: the whole adaptation step as one compiled op
(``torch.ops.mzsr_fast.adapt_step``, csrc/cpu/cpu_ops.cpp): NHWC direct 3x3 convs with
AVX-512 (AVX2 fallback, plain C++ elsewhere) chosen at run time, OpenMP over rows, bias /
ReLU / residual / L1 gradient / ReLU mask fused into the conv epilogues, the SGD update
fused into the weight-gradient reduction, and no allocation after the first step at a
given size (one per-thread arena that only grows, shared by the step and the upscale
forward, so the peak memory is max(step, forward), not their sum).

Parameters are kept as the 16 contiguous float32 tensors ``[w0, b0, ..., w7, b7]``
(OIHW weights), updated in place by the op.

fp32 uses Winograd F(2x2,3x3) for the forward, input and weight gradients of the six
64 -> 64 layers (AVX-512 default; ``MZSR_FAST_CPU_WINOGRAD=0`` or
``torch.ops.mzsr_fast.cpu_winograd("off")`` disables it), fp32 error at the direct
kernels' level.

Measurements (kernel GF/s, per conv, whole call, output PSNR, peak RSS) are rows of
benchmarks/results/cpu-amd-epyc-2c.csv (docs/benchmarks.md): ``ops/conv3x3_*_64to64*``,
``ops/step/gflops``, ``e2e/adapt_and_upscale_steps10`` (and ``.../psnr_y``,
``.../peak_rss_above_start``) for providers ``cpu_fp32``, ``cpu_fp32:direct`` (Winograd
off), ``cpu_bf16`` and the ``reference_*`` / ``module_sgd_*`` baselines.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from .. import _ext, chain, model
from .base import Backend

__all__ = ["CpuBackend"]


def _ops():
    return torch.ops.mzsr_fast


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> contiguous (N, H, W, C) float32."""
    return x.permute(0, 2, 3, 1).to(torch.float32).contiguous()


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2).contiguous()


def _precisions() -> tuple[str, ...]:
    """("fp32", "bf16") where the compiled ops and AVX512_BF16 are present, else ("fp32",),
    so that ``backend="auto"`` never picks this backend for a precision it cannot run."""
    try:
        if _ext.has_op("adapt_step_prec", "cpu") and bool(torch.ops.mzsr_fast.cpu_has_bf16()):
            return ("fp32", "bf16")
    except Exception:  # a missing or stale extension: fp32 only (available() says why)
        pass
    return ("fp32",)


class CpuBackend(Backend):
    """Compiled CPU kernels.

    ``precision="fp32"`` matches the reference to float32 rounding (also with the Winograd
    path of the 64 -> 64 layers, on by default with AVX-512).  ``"bf16"`` (CPUs with
    AVX512_BF16 only): the forward, input-gradient and weight-gradient convs of layers
    1..7 take bf16 operands (fp32 accumulation, ``vdpbf16ps``); the first layer, the loss,
    the master weights and the update stay fp32.  Kept because it wins: the whole call
    ``e2e/adapt_and_upscale_steps10``, ``cpu_bf16`` vs ``cpu_fp32``, in cpu-amd-epyc-2c.csv;
    its PSNR cost: rows ``quality/mzsr10_g^d_2.0/psnr_y*`` of the same table.
    """

    name = "cpu"
    masked_grads = "native per-layer ops"
    #: "bf16" only on CPUs with AVX512_BF16 (decided once, at import)
    precisions = _precisions()

    def __init__(self, device="cpu", precision="fp32"):
        if precision == "bf16" and precision not in self.precisions:
            raise ValueError("cpu backend: precision 'bf16' needs a CPU with AVX512_BF16 and the compiled "
                             f"ops (use 'fp32'); extension: {_ext.status}")
        super().__init__(device, precision)
        self._names: list[str] = []
        self._plist: list[torch.Tensor] = []

    @classmethod
    def available(cls, device: torch.device) -> tuple[bool, str]:
        device = torch.device(device)
        if device.type != "cpu":
            return False, f"the cpu backend runs on the CPU only (asked for {device})"
        if not _ext.has_op("adapt_step", "cpu"):
            return False, f"compiled CPU ops not available: {_ext.status}"
        return True, ""

    def prepare(self, params: Mapping[str, torch.Tensor], shape: Sequence[int]) -> None:
        bias = "layers.0.bias" in params
        names = model.param_names(bias=True)
        plist = []
        for i, (ci, co) in enumerate(model.CHANNELS):
            plist.append(params[f"layers.{i}.weight"].detach().to("cpu", torch.float32).clone().contiguous())
            b = params.get(f"layers.{i}.bias") if bias else None
            plist.append(torch.zeros(co) if b is None else b.detach().to("cpu", torch.float32).clone().contiguous())
        self._names = names
        self._has_bias = bias
        self._plist = plist

    def _check(self):
        if not self._plist:
            raise RuntimeError("CpuBackend: call prepare(params, shape) first")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check()
        return _nchw(_ops().net_forward(self._plist, _nhwc(x), self.precision))

    def grads(self, x: torch.Tensor, target: torch.Tensor, box=None, numel=None):
        """Whole image: the fused ``net_grads`` op (this precision).  With a ``box``: the
        chain (:func:`mzsr_fast.chain.grads`) over the compiled per-layer conv ops on the
        parameters in place, float32 whatever ``precision`` (the per-layer ops have no
        bf16 variant)."""
        self._check()
        if box is None:
            loss, g = _ops().net_grads(self._plist, _nhwc(x), _nhwc(target), self.precision)
        else:
            loss, g = chain.grads(_ops(), self._plist, _nhwc(self._input(x)), _nhwc(self._input(target, "target")),
                                  box, numel)
        return loss, chain.grads_dict(g, self._names if self._has_bias else self._names[::2])

    def step(self, x: torch.Tensor, target: torch.Tensor, lr: float) -> torch.Tensor:
        self._check()
        loss = self._op()(self._plist, _nhwc(x), _nhwc(target), torch.tensor(float(lr)))
        self._zero_bias()
        return loss

    def _op(self):
        """adapt_step(params, x, target, lr) in this backend's precision."""
        if self.precision == "fp32":
            return _ops().adapt_step
        prec, op = self.precision, _ops().adapt_step_prec
        return lambda p, x, t, lr: op(p, x, t, lr, prec)

    def _zero_bias(self):
        # a bias-free net runs with zero biases; the op updates them, so reset them
        if not self._has_bias:
            for b in self._plist[1::2]:
                b.zero_()

    def adapt(self, x: torch.Tensor, target: torch.Tensor, schedule: Sequence[float]) -> torch.Tensor:
        self._check()
        if len(schedule) == 0:
            return torch.zeros(0)
        xn, tn = _nhwc(x), _nhwc(target)  # converted once for all steps
        op = self._op()
        losses = []
        for lr in schedule:
            losses.append(op(self._plist, xn, tn, torch.tensor(float(lr))))
            self._zero_bias()
        return torch.stack(losses).float()

    def apply_grads(self, grads, lr: float) -> None:
        """SGD update of the parameters in place."""
        self._check()
        with torch.no_grad():
            for k, p in zip(self._names, self._plist):
                if k in grads:
                    p.sub_(grads[k], alpha=float(lr))
        self._zero_bias()

    def release_workspace(self) -> None:
        """Free this thread's arena (it only grows: after the forward of a large tile it
        holds about ``memory/forward_bytes_per_pixel`` of that tile's pixels: rows of
        benchmarks/results/cpu-amd-epyc-2c.csv, provider ``cpu_fp32``)."""
        try:
            _ops().cpu_release_workspace()
        except (AttributeError, RuntimeError):  # an older extension without the op: keep it
            pass

    def params(self) -> dict[str, torch.Tensor]:
        self._check()
        out = {k: v.clone() for k, v in zip(self._names, self._plist)}
        if not self._has_bias:
            out = {k: v for k, v in out.items() if not k.endswith(".bias")}
        return out

    def describe(self) -> str:
        try:
            isa = _ops().cpu_isa("")
        except Exception:  # pragma: no cover - describe must never fail
            isa = "?"
        return f"{self.name}[{self.precision}, {isa}] on {self.device}"
