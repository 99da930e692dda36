"""The backend interface.  Every backend (reference, cpu, triton, cuda) implements it and
runs the same shared test suite against ``reference``.

All tensors crossing this interface are NCHW ``(N, 3, H, W)`` float32 on the backend's
device (a backend converts to its own layout, e.g. NHWC, inside).  Parameters cross it as
the ``dict[str, Tensor]`` of :mod:`mzsr_fast.model` (OIHW weights).
"""
from __future__ import annotations

import abc
import contextlib
from typing import ClassVar, Mapping, Sequence

import torch

from .. import chain

__all__ = ["Backend", "PRECISIONS", "capture_graph", "matmul_precision"]

#: fp32: exact float32 arithmetic; tf32: float32 storage, TF32 tensor-core products;
#: bf16: bf16 operands, fp32 accumulation and fp32 master weights.
PRECISIONS = ("fp32", "tf32", "bf16")


def capture_graph(device, body, warm=None, *, capture_error_mode: str = "global"):
    """``(graph, body's return value)``: one eager run of ``warm`` (default ``body``) on a side
    stream first (module loading, autotuning, allocator and cuDNN warm-up must not happen
    during capture), then ``body`` captured into a ``torch.cuda.CUDAGraph``.  Tensors
    ``body`` returns live in the graph's pool and are rewritten by every replay."""
    with torch.cuda.device(device):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            (warm or body)()
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode=capture_error_mode):
            out = body()
        torch.cuda.synchronize()
    return graph, out


@contextlib.contextmanager
def matmul_precision(device: torch.device, precision: str):
    """Set TF32 use (``precision == "tf32"``) for the duration of a call on CUDA and restore
    the caller's flags; nothing on the CPU."""
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


class Backend(abc.ABC):
    """One implementation of the MZSR adaptation and upscaling.

    Life cycle for one image::

        b = Backend(device, precision)
        b.prepare(params, son_up.shape)        # copies params: the caller's are never touched
        losses = b.adapt(son_up, lr_img, schedule)   # k SGD steps, (k,) float32 losses
        sr = b.upscale(lr_up)                   # forward of the adapted net (any size)

    Tiled / crop adaptation (:mod:`mzsr_fast.run`) instead sums ``b.grads(region, target
    region, box, numel)`` over the regions of a step and applies ``b.apply_grads(g, lr)``.
    Backends are made by the one factory, :func:`mzsr_fast.backends.get`.
    """

    name: ClassVar[str] = "base"
    #: precisions this backend implements
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    def __init__(self, device: torch.device | str = "cpu", precision: str = "fp32"):
        self.device = torch.device(device)
        if precision not in self.precisions:
            raise ValueError(
                f"backend {self.name!r} does not support precision {precision!r} (supported: {self.precisions})"
            )
        self.precision = precision
        ok, why = self.available(self.device)
        if not ok:
            raise RuntimeError(f"backend {self.name!r} is not available on {self.device}: {why}")

    # --- discovery -------------------------------------------------------------------
    @classmethod
    def available(cls, device: torch.device) -> tuple[bool, str]:
        """(usable on this device?, reason if not)."""
        return True, ""

    # --- the interface ---------------------------------------------------------------
    @abc.abstractmethod
    def prepare(self, params: Mapping[str, torch.Tensor], shape: Sequence[int]) -> None:
        """Take a private copy of ``params`` and allocate for adaptation inputs of
        ``shape = (N, 3, H, W)``.  Called once per image; may capture CUDA graphs."""

    @abc.abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + net(x)`` with the current parameters; x ``(N, 3, H, W)`` f32, any size."""

    @abc.abstractmethod
    def grads(self, x: torch.Tensor, target: torch.Tensor, box=None, numel: int | None = None
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, gradients by parameter name, the keys of :meth:`params`) with the current
        parameters; no update.

        x, target: ``(N, 3, h, w)`` float32.  ``box`` None: ``mean|x + net(x) - target|``.
        ``box`` ``(y0, y1, x0, x1)`` (or one per batch element): x and target are regions
        of a larger image and the loss is ``sum_interiors |x + net(x) - target| / numel``
        with ``numel`` the element count of the whole target (exact tiled adaptation,
        :mod:`mzsr_fast.tiles`); see :attr:`masked_grads`."""

    @abc.abstractmethod
    def step(self, x: torch.Tensor, target: torch.Tensor, lr: float) -> torch.Tensor:
        """One SGD step in place; returns the loss *before* the update (0-d tensor)."""

    @abc.abstractmethod
    def params(self) -> dict[str, torch.Tensor]:
        """The current parameters (copies), canonical names and OIHW layout."""

    def adapt(self, x: torch.Tensor, target: torch.Tensor, schedule: Sequence[float]) -> torch.Tensor:
        """``len(schedule)`` SGD steps; returns the losses ``(k,)`` float32 (each before its
        step).  Backends may replace this loop by one captured graph."""
        losses = [self.step(x, target, float(lr)).reshape(()) for lr in schedule]
        if not losses:
            return torch.zeros(0, device=self.device)
        return torch.stack(losses).float()

    def upscale(self, x: torch.Tensor) -> torch.Tensor:
        """Forward of the adapted net at the output size (no gradient)."""
        return self.forward(x)

    # --- masked gradients (tiled and crop adaptation, mzsr_fast.run) -----------------
    #: what computes :meth:`grads` with a ``box``: the backend's own kernels through
    #: :func:`mzsr_fast.chain.grads`, or the reference ops (PyTorch) on its device.  The
    #: default is the reference fallback; :meth:`describe` names it, and the API reports it in
    #: ``info["tiling"]["masked_grads"]``, so it is never silent.
    masked_grads: ClassVar[str] = "reference ops (fallback)"

    def masked_grads_fallback(self, x: torch.Tensor, target: torch.Tensor, box, numel: int | None
                              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`grads` with a ``box`` from the reference ops (:mod:`mzsr_fast.reference`)
        on this backend's device through :func:`mzsr_fast.chain.grads`, in float32 (TF32
        convs where ``precision == "tf32"``; for ``bf16`` backends masked gradients are
        float32), with the current :meth:`params`."""
        from .. import reference as ops

        p = self.params()
        xn = self._input(x).permute(0, 2, 3, 1).contiguous()
        tn = self._input(target, "target").permute(0, 2, 3, 1).contiguous()
        with torch.no_grad(), matmul_precision(self.device, "tf32" if self.precision == "tf32" else "fp32"):
            loss, g = chain.grads(ops, chain.plist_of(p), xn, tn, box, numel)
        return loss, chain.grads_dict(g, list(p))

    def region_grads(self, x: torch.Tensor, target: torch.Tensor, box, numel: int
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``grads(x, target, box, numel)`` (the name before issue 19; benchmarks use it)."""
        return self.grads(x, target, box, numel)

    def apply_grads(self, grads: Mapping[str, torch.Tensor], lr: float) -> None:
        """One SGD update ``p -= lr * grads[name]`` of the current parameters.

        Default: through :meth:`params` and :meth:`prepare` (the shape passed to prepare is
        an allocation hint); backends may update their own storage in place instead."""
        p = self.params()
        with torch.no_grad():
            new = {k: v - float(lr) * grads[k].to(v.device, v.dtype) for k, v in p.items()}
        self.prepare(new, (1, 3, 2 * 8 + 1, 2 * 8 + 1))

    def release_workspace(self) -> None:
        """Free scratch memory a backend keeps between calls for speed (called by the API
        after a tiled, i.e. large, image so that the conversion of the output does not
        run on top of it).  Default: nothing to free."""

    def _input(self, x: torch.Tensor, what: str = "x") -> torch.Tensor:
        """An interface tensor checked (``(N, 3, H, W)``, non-empty) -> float32 on the device."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{what} must be (N, 3, H, W), got {tuple(x.shape)}")
        if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f"{what} is empty: {tuple(x.shape)}")
        return x.to(self.device, torch.float32)

    def describe(self) -> str:
        return f"{self.name}[{self.precision}] on {self.device}"
