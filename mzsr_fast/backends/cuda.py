"""CUDA backend: the hand-written kernels of ``csrc/cuda`` (through ``torch.ops.mzsr_fast``),
NHWC activations, no autograd; on CUDA the k-step adaptation and the upscale forward are
each captured once into a CUDA graph per (input shape, steps) and replayed.

One SGD step is one call of ``cuda_adapt_step`` (k steps: ``cuda_adapt``), 37 kernel
launches for tf32/bf16 (43 for fp32), all on the current stream::

    pack:   every weight into its forward (9 Cin, Cout) and input-gradient (9 Cout, Cin)
            GEMM operand (one launch)
    fwd:    8 x conv3x3 implicit GEMM, epilogue bias + ReLU (layers 0-6) / bias + global
            residual (layer 7)
    loss:   L1 loss + gradient (two fixed-order stages)
    bwd:    per layer 7..0: wgrad partials over fixed pixel chunks (+ bias partials: in
            the tensor-core kernel, else one more launch), one fixed-order reduction
            (deterministic, no atomics); dgrad with the ReLU mask of the layer input
            (layers 7..1)
    update: one multi-tensor SGD launch, lr read from device memory

NVTX (eager runs): ``mzsr/adapt/step<i>/{pack,fwd,loss,bwd,update}`` with per-layer
children ``fwd/layer<i>`` and ``bwd/layer<i>/{wgrad,dgrad}``; kernels are named
``mzsr::mzsr_conv3x3_{fwd,dgrad}_{fp32,tc}_nhwc``, ``mzsr::mzsr_conv3x3_wgrad_{fp32,tc}_nhwc``,
``mzsr::mzsr_conv3x3_wgrad_reduce``, ``mzsr::mzsr_l1_loss_*``, ``mzsr::mzsr_sgd_update_multi_tensor``.

Precisions: ``fp32`` runs the exact FFMA kernels everywhere; ``tf32`` / ``bf16`` run the
64-channel layers on tensor cores (WMMA, fp32 accumulation, fp32 master weights) and
the 3-channel first/last layers on the fp32 kernels.  Activations are fp32 in memory,
except with kernel variant 3 in bf16 (``MZSR_FAST_CUDA_VARIANT=3``), which stores the
64-channel activations and their gradients as bf16.

The learning rates of a schedule and the losses live in device tensors, so one captured
graph replays any schedule of the same length (graphs and the weight copy: the shared
:class:`~mzsr_fast.backends.graphed.GraphedBackend`).  ``use_graphs=False`` (or
``MZSR_FAST_CUDA_GRAPHS=0``, legacy ``MZSR_CUDA_GRAPHS=0``) runs the same ops eagerly.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import torch

from .. import _ext, chain, model, nvtx
from .graphed import GraphedBackend, env_switch

__all__ = ["CudaBackend"]

_OPS = ("conv3x3_fwd", "cuda_adapt", "cuda_net_forward", "cuda_net_grads", "cuda_adapt_step")
def _ops():
    return torch.ops.mzsr_fast


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2).contiguous()


def kernel_precision(precision: str, env=None) -> tuple[str, int]:
    """``(precision string of the torch ops, kernel variant)`` for ``precision`` and
    ``MZSR_FAST_CUDA_VARIANT`` (0, 1, 2 or 3; unset or empty = 0) of ``env`` (default
    ``os.environ``): ``("bf16", 0)``, ``("bf16:2", 2)``."""
    env = os.environ if env is None else env
    variant = str(env.get("MZSR_FAST_CUDA_VARIANT", "0")).strip() or "0"
    if variant not in ("0", "1", "2", "3"):
        raise ValueError(f"MZSR_FAST_CUDA_VARIANT must be 0, 1, 2 or 3, got {variant!r}")
    return (precision if variant == "0" else f"{precision}:{variant}"), int(variant)


class CudaBackend(GraphedBackend):
    """Hand-written CUDA kernels + CUDA graphs; factory options (``backends.get("cuda",
    ..., use_graphs=..., variant=...)``) or their environment switches.  ``use_graphs``
    (default: on unless ``MZSR_FAST_CUDA_GRAPHS=0``, legacy ``MZSR_CUDA_GRAPHS=0``) selects
    graph replay for ``adapt`` and ``upscale``.  ``variant`` (default
    ``MZSR_FAST_CUDA_VARIANT``: 0, 1, 2 or 3; unset 0) picks the conv kernel variant
    (csrc/cuda/mzsr_cuda.h ``mzsr_conv3x3_pick``): 1 the tensor-core kernel's 4x2 warp
    layout, 2 the halo-tile bf16 kernel and the thin 3-channel kernels (conv3x3_halo.cu),
    3 the same kernels with the 64-channel activations and gradients stored as bf16
    (bf16 precision only; tf32 / fp32 run as 2)."""

    name = "cuda"
    masked_grads = "native per-layer fp32 CUDA ops"
    precisions = ("fp32", "tf32", "bf16")
    env_switches = ("MZSR_FAST_CUDA_VARIANT",)

    def __init__(self, device="cuda", precision="fp32", use_graphs: bool | None = None, variant: int | None = None):
        super().__init__(device, precision)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        if use_graphs is None:
            use_graphs = env_switch("CUDA_GRAPHS", "MZSR_CUDA_GRAPHS", "1") != "0"
        self.use_graphs = bool(use_graphs)
        self._names: list[str] = []
        self._flat: torch.Tensor | None = None
        self._plist: list[torch.Tensor] = []
        self._lr1 = torch.zeros((), dtype=torch.float32, device=self.device)
        #: the precision string of the torch ops: "bf16", or "bf16:2" with a kernel variant
        env = None if variant is None else {"MZSR_FAST_CUDA_VARIANT": str(variant)}
        self._kprec, self.variant = kernel_precision(self.precision, env)

    # ------------------------------------------------------------------ discovery
    @classmethod
    def available(cls, device: torch.device) -> tuple[bool, str]:
        device = torch.device(device)
        if device.type != "cuda":
            return False, f"the cuda backend runs on CUDA devices only, not {device.type!r}"
        if not torch.cuda.is_available():
            return False, "CUDA is not available (CPU-only torch or no GPU)"
        missing = [op for op in _OPS if not _ext.has_op(op, "cuda")]
        if missing:
            return False, (f"mzsr_fast._C has no CUDA kernels for {missing} (extension: {_ext.status}); build it "
                           f"with a CUDA torch and nvcc present: {_ext.REINSTALL}")
        return True, ""

    # ------------------------------------------------------------------ parameters
    def prepare(self, params: Mapping[str, torch.Tensor], shape: Sequence[int]) -> None:
        has_bias = "layers.0.bias" in params
        names = model.param_names(has_bias)
        if set(params) != set(names):
            raise ValueError(f"params must have exactly the keys {sorted(names)}; got {sorted(params)}")
        if len(shape) != 4 or shape[1] != 3:
            raise ValueError(f"shape must be (N, 3, H, W), got {tuple(shape)}")
        for i, (ci, co) in enumerate(model.CHANNELS):
            w = params[f"layers.{i}.weight"]
            if tuple(w.shape) != (co, ci, 3, 3):
                raise ValueError(f"layers.{i}.weight has shape {tuple(w.shape)}, want {(co, ci, 3, 3)}")
            if has_bias and tuple(params[f"layers.{i}.bias"].shape) != (co,):
                raise ValueError(f"layers.{i}.bias has shape {tuple(params[f'layers.{i}.bias'].shape)}, want {(co,)}")
        if names != self._names:
            # new layout: new parameter storage, and graphs captured on the old one are void
            sizes = [params[k].numel() for k in names]
            self._flat = torch.zeros(sum(sizes), dtype=torch.float32, device=self.device)
            self._plist, o = [], 0
            for k, n in zip(names, sizes):
                self._plist.append(self._flat[o:o + n].view(params[k].shape))
                o += n
            self._names = list(names)
            self._forget()
        # the same (cached) weights for every image: one device copy (GraphedBackend)
        if self._restore_weights(params):
            return
        with torch.no_grad():
            for k, p in zip(names, self._plist):
                p.copy_(params[k].detach().to(self.device, torch.float32))
        self._remember_weights(params)

    def _flats(self):
        return (self._flat,)

    def params(self) -> dict[str, torch.Tensor]:
        self._check_prepared()
        return {k: p.detach().clone() for k, p in zip(self._names, self._plist)}

    def _check_prepared(self):
        if not self._plist:
            raise RuntimeError("call prepare(params, shape) first")


    def _pair(self, x, target):
        x, target = self._input(x), self._input(target, "target")
        if x.shape != target.shape:
            raise ValueError(f"x {tuple(x.shape)} and target {tuple(target.shape)} differ in shape")
        return x, target

    # ------------------------------------------------------------------ interface
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_prepared()
        x = self._input(x)
        with torch.cuda.device(self.device), nvtx.range("mzsr/cuda/forward"):
            return _nchw(_ops().cuda_net_forward(self._plist, _nhwc(x), self._kprec))

    def upscale(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_graphs:
            return self.forward(x)
        self._check_prepared()
        x = self._input(x)
        key = tuple(x.shape)
        ent = self._fgraphs.get(key)
        if ent is None:
            sx = torch.zeros(key, dtype=torch.float32, device=self.device)
            sy = torch.zeros(key, dtype=torch.float32, device=self.device)

            def body():
                sy.copy_(_ops().cuda_net_forward(self._plist, _nhwc(sx), self._kprec).permute(0, 3, 1, 2))

            ent = self._fgraphs.put(key, (self._capture(body), sx, sy))
        graph, sx, sy = ent
        with nvtx.range("mzsr/cuda/upscale"):
            sx.copy_(x)
            graph.replay()
            return sy.clone()

    def grads(self, x, target, box=None, numel=None):
        """Whole image: the fused ``cuda_net_grads`` (this precision and kernel variant).
        With a ``box``: the chain (:func:`mzsr_fast.chain.grads`) over this extension's
        per-layer fp32 CUDA ops (``conv3x3_fwd/dgrad/wgrad``, ``l1_loss_grad``) on the
        parameters in place."""
        self._check_prepared()
        x, target = self._pair(x, target)
        if box is not None:
            with torch.cuda.device(self.device), nvtx.range("mzsr/cuda/masked_grads"):
                loss, g = chain.grads(_ops(), self._plist, _nhwc(x), _nhwc(target), box, numel)
            return loss, chain.grads_dict(g, self._names)
        with torch.cuda.device(self.device), nvtx.range("mzsr/cuda/grads"):
            loss, g = _ops().cuda_net_grads(self._plist, _nhwc(x), _nhwc(target), self._kprec)
        return loss, dict(zip(self._names, g))

    def step(self, x, target, lr: float) -> torch.Tensor:
        if self.use_graphs:  # a captured one-step graph (per shape), lr rewritten per call
            return self.adapt(x, target, [float(lr)])[0]
        self._check_prepared()
        x, target = self._pair(x, target)
        self._lr1.fill_(float(lr))
        with torch.cuda.device(self.device), nvtx.range("mzsr/cuda/step"):
            return _ops().cuda_adapt_step(self._plist, _nhwc(x), _nhwc(target), self._lr1, self._kprec)

    def adapt(self, x: torch.Tensor, target: torch.Tensor, schedule: Sequence[float]) -> torch.Tensor:
        self._check_prepared()
        k = len(schedule)
        if k == 0:
            return torch.zeros(0, device=self.device)
        x, target = self._pair(x, target)
        sched = torch.tensor([float(v) for v in schedule], dtype=torch.float32)
        if not self.use_graphs:
            with torch.cuda.device(self.device), nvtx.range("mzsr/cuda/adapt"):
                return _ops().cuda_adapt(self._plist, _nhwc(x), _nhwc(target), sched.to(self.device), self._kprec)
        key = (tuple(x.shape), k)
        ent = self._graphs.get(key)
        if ent is None:
            sx = torch.zeros(x.shape, dtype=torch.float32, device=self.device)
            st = torch.zeros(x.shape, dtype=torch.float32, device=self.device)
            lrs = torch.zeros(k, dtype=torch.float32, device=self.device)
            losses = torch.zeros(k, dtype=torch.float32, device=self.device)

            def body():
                losses.copy_(_ops().cuda_adapt(self._plist, _nhwc(sx), _nhwc(st), lrs, self._kprec))

            def warm():  # the same ops on scratch parameters: the real ones stay untouched
                scratch = [p.clone() for p in self._plist]
                _ops().cuda_adapt(scratch, _nhwc(sx), _nhwc(st), torch.zeros_like(lrs), self._kprec)

            ent = self._graphs.put(key, (self._capture(body, warm), sx, st, lrs, losses))
        graph, sx, st, lrs, losses = ent
        with nvtx.range("mzsr/cuda/adapt"):
            sx.copy_(x)
            st.copy_(target)
            lrs.copy_(sched)
            graph.replay()
            return losses.clone()

    def describe(self) -> str:
        mode = "graphs" if self.use_graphs else "eager"
        var = f", variant {self.variant}" if self.variant else ""
        return f"{self.name}[{self.precision}, {mode}{var}] on {self.device}"
