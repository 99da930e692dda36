"""Triton backend: the whole adaptation step from the fused kernels of
:mod:`mzsr_fast.kernels.conv3x3` (no autograd), NHWC activations, and on CUDA the k-step
loop and the upscale forward each captured once into a CUDA graph and replayed.

One step (32 kernel launches)::

    fwd:    7 x conv+bias+ReLU, conv+bias+residual fused with the L1 gradient (writes
            sign(pred - target)/numel and per-tile |pred - target| partials), loss reduce
    bwd:    per layer 7..0: dgrad fused with the ReLU mask of its input (layers 7..1),
            wgrad partials (fixed pixel chunks), fixed-order reduction [+ SGD update]

Parameters live in one flat fp32 buffer, per layer ``[wf (9 Cin Cout) | b (Cout)]`` with
``wf`` the packed ``(3, 3, Cin, Cout)`` weight (see :func:`kernels.conv3x3.pack_weight`);
``params()`` converts back to OIHW.  The kernels read two operand copies in the activation
dtype, kept in sync by the fused reduction: ``(3, 3, Cout, Cin)`` for the forward (K-major
B for TF32 wgmma) and ``(3, 3, Cin, Cout)`` for the input gradient (bf16 in the bf16
path).  The learning rates of a schedule and the losses of the steps live in device
tensors, so a captured graph replays any schedule and the losses are read once at the end.

Knobs (environment): ``MZSR_FAST_TRITON_GRAPHS=0`` (legacy ``MZSR_TRITON_GRAPHS=0``; eager),
``MZSR_TRITON_AUTOTUNE=0`` (first config of each candidate list, no tuning).
``python -m mzsr_fast.backends.triton_profile`` times it against cuDNN.

The reduction kernel of each layer applies ``w -= lr * g`` right after that layer's dgrad
has consumed ``w``.  The graph path (CUDA, default) replays that kernel sequence; the eager
path (CPU interpreter, or ``use_graphs=False`` / ``MZSR_TRITON_GRAPHS=0``) launches the same
sequence, inside NVTX ranges ``mzsr/adapt/step{i}/{fwd,bwd}``, so the interpreter tests on
the CPU check what CUDA replays.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import torch

from .. import model
from .. import nvtx
from .graphed import BoundedCache, GraphedBackend, env_switch

from .triton_buffers import _CH, _LAYOUT, _NL, _AdaptPlan, _FwdPlan, _Params, _kernels  # noqa: F401

__all__ = ["TritonBackend"]


class TritonBackend(GraphedBackend):
    """Fused Triton kernels + CUDA graphs.  Option: ``use_graphs`` (default: on for CUDA
    unless ``MZSR_TRITON_GRAPHS=0``)."""

    name = "triton"
    masked_grads = "reference ops (fallback: no masked Triton kernels)"
    precisions = ("fp32", "tf32", "bf16")

    def __init__(self, device="cuda", precision="fp32", use_graphs: bool | None = None):
        super().__init__(device, precision)
        if use_graphs is None:
            use_graphs = env_switch("TRITON_GRAPHS", "MZSR_TRITON_GRAPHS", "1") != "0"
        self.use_graphs = bool(use_graphs) and self.device.type == "cuda"
        self._flat = torch.zeros(_LAYOUT.total, dtype=torch.float32, device=self.device)
        adt = _kernels().act_dtype(precision)
        self._tflat = torch.zeros(_LAYOUT.total, dtype=adt, device=self.device)
        self._dflat = torch.zeros(_LAYOUT.total, dtype=adt, device=self.device)
        self._p = _Params(self._flat, self._tflat, self._dflat)
        self._gflat = torch.zeros(_LAYOUT.total, dtype=torch.float32, device=self.device)
        self._g = _Params(self._gflat)
        self._has_bias = True
        self._prepared = False
        # per-shape buffers, bounded like the graphs; a graph replays on its shape's buffers,
        # so dropping the buffers drops the graphs captured on them
        self._plans = BoundedCache(on_evict=lambda shape, _: self._drop_graphs(self._graphs, lambda k: k[0] == shape))
        self._fplans = BoundedCache(on_evict=lambda shape, _: self._drop_graphs(self._fgraphs, lambda k: k == shape))
        self._lr1 = torch.zeros(1, dtype=torch.float32, device=self.device)
        self._loss1 = torch.zeros(1, dtype=torch.float32, device=self.device)

    # ------------------------------------------------------------------ discovery
    @classmethod
    def available(cls, device: torch.device) -> tuple[bool, str]:
        device = torch.device(device)
        try:
            import triton  # noqa: F401
        except ImportError as e:
            return False, f"triton is not importable: {e}"
        if device.type == "cuda":
            if not torch.cuda.is_available():
                return False, "CUDA is not available"
            if os.environ.get("TRITON_INTERPRET") == "1":
                return False, "TRITON_INTERPRET=1 is set (interpreter only runs on CPU tensors)"
            return True, ""
        if device.type == "cpu":
            if os.environ.get("TRITON_INTERPRET") != "1":
                return False, "on CPU Triton runs only in its interpreter (set TRITON_INTERPRET=1; slow, for tests)"
            K = _kernels()
            if type(K.mzsr_sgd_update).__name__ != "InterpretedFunction":
                return False, "mzsr_fast.kernels was imported before TRITON_INTERPRET=1 was set"
            return True, ""
        return False, f"unsupported device type {device.type!r}"

    # ------------------------------------------------------------------ parameters
    def prepare(self, params: Mapping[str, torch.Tensor], shape: Sequence[int]) -> None:
        K = _kernels()
        has_bias = "layers.0.bias" in params
        want = set(model.param_names(has_bias))
        if set(params) != want:
            raise ValueError(f"params must have exactly the keys {sorted(want)}; got {sorted(params)}")
        if len(shape) != 4 or shape[1] != 3:
            raise ValueError(f"shape must be (N, 3, H, W), got {tuple(shape)}")
        # the same (cached) weights for every image: one device copy (GraphedBackend)
        if self._restore_weights(params):
            self._has_bias = has_bias
            self._prepared = True
            return
        for i, (ci, co) in enumerate(_CH):
            w = params[f"layers.{i}.weight"]
            if tuple(w.shape) != (co, ci, 3, 3):
                raise ValueError(f"layers.{i}.weight has shape {tuple(w.shape)}, want {(co, ci, 3, 3)}")
            if has_bias and params[f"layers.{i}.bias"].numel() != co:
                raise ValueError(f"layers.{i}.bias has {params[f'layers.{i}.bias'].numel()} elements, want {co}")
        with torch.no_grad():
            for i, (ci, co) in enumerate(_CH):
                w = params[f"layers.{i}.weight"]
                self._p.wf[i].copy_(K.pack_weight(w.to(self.device)))
                if has_bias:
                    self._p.b[i].copy_(params[f"layers.{i}.bias"].to(self.device, torch.float32).reshape(-1))
                else:
                    self._p.b[i].zero_()
            self._p.refresh_copies()
        self._has_bias = has_bias
        self._prepared = True
        self._remember_weights(params)

    def _flats(self):
        return (self._flat, self._tflat, self._dflat)

    @staticmethod
    def _drop_graphs(cache, which) -> None:
        for k in [k for k in cache if which(k)]:
            del cache[k]

    def params(self) -> dict[str, torch.Tensor]:
        self._check_prepared()
        return self._unflatten(self._p)

    def _unflatten(self, views: _Params) -> dict[str, torch.Tensor]:
        K = _kernels()
        out = {}
        for i, (ci, co) in enumerate(_CH):
            out[f"layers.{i}.weight"] = K.unpack_weight(views.wf[i], ci, co)
            if self._has_bias:
                out[f"layers.{i}.bias"] = views.b[i].clone()
        return out

    def _check_prepared(self):
        if not self._prepared:
            raise RuntimeError("call prepare(params, shape) first")


    # ------------------------------------------------------------------ plans
    def _plan(self, shape) -> _AdaptPlan:
        key = tuple(shape)
        return self._plans.get(key) or self._plans.put(key, _AdaptPlan(key, self.device, self.precision))

    def _fplan(self, shape) -> _FwdPlan:
        key = tuple(shape)
        return self._fplans.get(key) or self._fplans.put(key, _FwdPlan(key, self.device, self.precision))

    # ------------------------------------------------------------------ kernel sequences
    def _run_forward(self, fp: _FwdPlan, P: _Params) -> None:
        K = _kernels()
        h = fp.x_act
        for i, (ci, co) in enumerate(_CH):
            if i < _NL - 1:
                out = fp.bufs[i % 2]
                K.launch_fwd(h, P.wt[i], P.b[i], ci, co, out, relu=True, precision=self.precision)
                h = out
            else:
                K.launch_fwd(h, P.wt[i], P.b[i], ci, co, fp.y, relu=False, residual=fp.x, precision=self.precision)

    def _run_step(self, pl: _AdaptPlan, P: _Params, lrs: torch.Tensor, i: int, losses: torch.Tensor,
                  loss_idx: int, *, mode: str, ranges: bool) -> None:
        """One adaptation step (or only its gradients) as kernel launches, no host sync.

        mode: "fused" (each reduction applies SGD with lrs[i]), "grads" (the reductions
        store the gradients into self._g, no update)."""
        K = _kernels()
        prec = self.precision
        rng = nvtx.range if ranges else _null_range
        with rng(f"mzsr/adapt/step{i}/fwd"):
            h = pl.x_act
            for l, (ci, co) in enumerate(_CH):
                if l < _NL - 1:
                    K.launch_fwd(h, P.wt[l], P.b[l], ci, co, pl.acts[l + 1], relu=True, precision=prec)
                    h = pl.acts[l + 1]
                else:
                    K.launch_fwd(h, P.wt[l], P.b[l], ci, co, pl.gout, relu=False, residual=pl.x,
                                 target=pl.target, loss_part=pl.loss_parts, precision=prec)
            K.l1_loss_reduce(pl.loss_parts, pl.n_parts, losses, loss_idx, pl.inv_numel)
        with rng(f"mzsr/adapt/step{i}/bwd"):
            g = pl.gout
            for l in range(_NL - 1, -1, -1):
                ci, co = _CH[l]
                gx = None
                if l > 0:
                    # dgrad reads w_l: it runs before this layer's (possibly fused) update
                    gx = pl.gbuf[l % 2]
                    K.launch_dgrad(g, P.wd[l], ci, co, gx, mask_src=pl.acts[l], precision=prec)
                s, chunk = pl.splits[l]
                ws = pl.ws_view(l)
                K.launch_wgrad(pl.acts[l], g, ci, co, ws, s, chunk, precision=prec)
                p_upd = _LAYOUT.size[l] if self._has_bias else 9 * ci * co
                if mode == "fused":
                    K.launch_reduce(ws, s, p_upd, param=P.layer[l], lr=lrs, lr_idx=i, param_t=P.wt[l],
                                    param_d=P.wd[l], cin=ci, cout=co)
                else:
                    K.launch_reduce(ws, s, p_upd, g=self._g.layer[l])
                g = gx

    # ------------------------------------------------------------------ interface
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_prepared()
        x = self._input(x)
        fp = self._fplan(x.shape)
        fp.load(x)
        self._run_forward(fp, self._p)
        return fp.y.permute(0, 3, 1, 2).contiguous()

    def upscale(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_graphs:
            return self.forward(x)
        self._check_prepared()
        x = self._input(x)
        key = tuple(x.shape)
        fp = self._fplan(key)
        fp.load(x)
        graph = self._fgraphs.get(key)
        if graph is None:
            graph = self._capture(lambda: self._run_forward(fp, self._p), warm=lambda: self._run_forward(fp, self._p))
            self._fgraphs.put(key, graph)
        with nvtx.range("mzsr/upscale/graph"):
            graph.replay()
        return fp.y.permute(0, 3, 1, 2).contiguous()

    def grads(self, x, target, box=None, numel=None):
        """Whole image: the kernel sequence in ``"grads"`` mode (no update).  With a ``box``:
        the reference ops on this device (:meth:`Backend.masked_grads_fallback`, float32 /
        TF32): the Triton kernels have no masked loss yet; ``masked_grads`` says so and
        ``info["tiling"]["masked_grads"]`` reports it."""
        if box is not None:
            return self.masked_grads_fallback(x, target, box, numel)
        self._check_prepared()
        x, target = self._input(x), self._input(target, "target")
        pl = self._plan(x.shape)
        pl.load(x, target)
        self._gflat.zero_()
        self._run_step(pl, self._p, self._lr1, 0, self._loss1, 0, mode="grads", ranges=False)
        g = self._unflatten(self._g)
        return self._loss1[0].clone(), {k: v.clone() for k, v in g.items()}

    def step(self, x, target, lr: float) -> torch.Tensor:
        if self.use_graphs:
            # one step = the captured one-step graph (lr in its device tensor)
            return self.adapt(x, target, [float(lr)])[0]
        self._check_prepared()
        x, target = self._input(x), self._input(target, "target")
        pl = self._plan(x.shape)
        pl.load(x, target)
        self._lr1.fill_(float(lr))
        self._run_step(pl, self._p, self._lr1, 0, self._loss1, 0, mode="fused", ranges=True)
        return self._loss1[0].clone()

    def adapt(self, x: torch.Tensor, target: torch.Tensor, schedule: Sequence[float]) -> torch.Tensor:
        self._check_prepared()
        k = len(schedule)
        if k == 0:
            return torch.zeros(0, device=self.device)
        x, target = self._input(x), self._input(target, "target")
        if x.shape != target.shape:
            raise ValueError(f"x {tuple(x.shape)} and target {tuple(target.shape)} differ")
        pl = self._plan(x.shape)
        pl.load(x, target)
        sched = torch.tensor([float(v) for v in schedule], dtype=torch.float32)
        if not self.use_graphs:
            lrs = sched.to(self.device)
            losses = torch.zeros(k, dtype=torch.float32, device=self.device)
            for i in range(k):
                self._run_step(pl, self._p, lrs, i, losses, i, mode="fused", ranges=True)
            return losses
        key = (tuple(x.shape), k, self._has_bias)
        ent = self._graphs.get(key)
        if ent is None:
            lrs = torch.zeros(k, dtype=torch.float32, device=self.device)
            losses = torch.zeros(k, dtype=torch.float32, device=self.device)

            def warm():
                # compile + autotune every kernel of the step on scratch parameters: the
                # real ones are untouched and no autotuning happens during capture
                scratch = self._p.clone()
                wl = torch.zeros(k, dtype=torch.float32, device=self.device)
                self._run_step(pl, scratch, wl, 0, wl, 0, mode="fused", ranges=False)

            def body():
                for i in range(k):
                    self._run_step(pl, self._p, lrs, i, losses, i, mode="fused", ranges=False)

            ent = self._graphs.put(key, [self._capture(body, warm), lrs, losses, None])
        graph, lrs, losses, last = ent
        sched_key = tuple(sched.tolist())
        if sched_key != last:  # the usual case repeats one schedule: skip the H2D copy
            lrs.copy_(sched)
            ent[3] = sched_key
        with nvtx.range(f"mzsr/adapt/graph_k{k}"):
            graph.replay()
        return losses.clone()

    def describe(self) -> str:
        g = "cuda-graphs" if self.use_graphs else "eager"
        return f"{self.name}[{self.precision}, {g}] on {self.device}"


class _NullRange:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _null_range(name: str) -> _NullRange:
    return _NullRange()
