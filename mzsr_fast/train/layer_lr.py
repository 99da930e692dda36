"""Meta-learned per-layer inner learning rates (Meta-SGD style), folded into the weights.

Why this needs no backend change: every layer but the last is ``relu(conv(h, W_l) + b_l)``
and ReLU is positively homogeneous, so scaling ``W_l`` by ``a_l > 0`` and ``b_l`` by
``P_l = a_0 ... a_l`` scales that layer's output by ``P_l``; with ``prod(a) = 1`` the
network's output (``x + net(x)``) is unchanged.  Plain SGD is not invariant to it: the
gradient of ``W_l`` scales by ``1 / a_l``, so one SGD step at rate ``alpha`` moves the
original ``W_l`` as a step at ``alpha / a_l**2`` would (and ``b_l`` at ``alpha / P_l**2``).
A rescaled weights file therefore *is* a file with per-layer inner learning rates, run by
every backend unchanged.  Two more scalars scale the file's recommended ``lr_schedule``
(metadata): one for the first step (MZSR(1)) and one for the steps after it.

This module learns those 8 + 2 numbers for a fixed weights file, through the test-time
adaptation itself (``K`` SGD steps, the schedule, the son -> LR training pair of a
training image, second order through all ``K`` steps), on ``--data`` (the training set
only), minimising the mean over tasks of ``log MSE(SR, HR)`` after step 1 and after step
``K`` (i.e. maximising the mean PSNR of MZSR(1) and MZSR(K)), then writes the folded file::

    python -m mzsr_fast.train.layer_lr --weights W --out runs/layer_lr --iters 150 [--resume]

``fold(params, log_a)`` is exact up to float rounding: the folded file's unadapted output
equals the original's (test ``tests/test_train_layer_lr.py``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from .. import model
from ..api import default_lr_schedule
from . import checkpoint as ckpt_mod
from .common import DEFAULT_DATA, check_finite
from .data import PatchSampler, load_folder, sample_task, step_rng
from .log import JsonlLogger
from .meta import functional_forward

__all__ = ["layer_scales", "fold", "effective_rates", "unrolled_losses", "run", "main"]


def layer_scales(log_a: torch.Tensor) -> torch.Tensor:
    """``log_a (L,)`` -> the scales ``a (L,)`` with ``prod(a) = 1`` (mean removed in log space)."""
    return torch.exp(log_a - log_a.mean())


def fold(params: Mapping[str, torch.Tensor], log_a: torch.Tensor) -> dict[str, torch.Tensor]:
    """The rescaled parameters (same function, per-layer SGD rates ``alpha / a_l**2``):
    ``W_l * a_l``, ``b_l * P_l`` with ``P_l = a_0 ... a_l``.  Differentiable in both."""
    n = sum(1 for k in params if k.endswith(".weight"))
    if log_a.shape != (n,):
        raise ValueError(f"log_a must have shape ({n},) for {n} layers, got {tuple(log_a.shape)}")
    a = layer_scales(log_a)
    P = torch.cumprod(a, 0)
    out = {}
    for k, v in params.items():
        layer = int(k.split(".")[1])
        out[k] = v * (a[layer] if k.endswith(".weight") else P[layer]).to(v.dtype)
    return out


def effective_rates(log_a: torch.Tensor) -> dict[str, list[float]]:
    """Per-layer multipliers of the inner learning rate that a folded file gives, for the
    original weights ``W_l`` (``1 / a_l**2``) and biases (``1 / P_l**2``)."""
    a = layer_scales(log_a.detach().double())
    P = torch.cumprod(a, 0)
    return {"weight": [round(float(v), 4) for v in a ** -2], "bias": [round(float(v), 4) for v in P ** -2]}


def _schedule(base: Sequence[float], log_g: torch.Tensor) -> list[torch.Tensor]:
    """The per-step rates: ``base[0] * exp(log_g[0])``, ``base[i] * exp(log_g[1])`` after."""
    g = torch.exp(log_g)
    return [base[i] * (g[0] if i == 0 else g[1]) for i in range(len(base))]


def _log_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # the clamp of the real upscale is left out: its gradient is zero where it bites
    return torch.log(((pred - target) ** 2).mean() + 1e-12)


def unrolled_losses(params: Mapping[str, torch.Tensor], log_a: torch.Tensor, log_g: torch.Tensor, task,
                    base: Sequence[float], report: Sequence[int], *, graph: bool = True) -> dict[int, torch.Tensor]:
    """Adapt ``fold(params, log_a)`` on the task's son -> LR pair for ``len(base)`` SGD steps
    of L1 at ``_schedule(base, log_g)`` and return ``{n: log MSE(f(theta_n, LR_up), HR)}`` for
    ``n`` in ``report`` (0 = unadapted).  ``graph``: keep the graph through every step (second
    order, for the meta-gradient); else plain steps and the MSE of the clamped output, as
    ``adapt_and_upscale`` returns it (the evaluation)."""
    fast = fold(params, log_a)
    rates = _schedule(base, log_g)
    if not graph:
        fast = {k: v.detach().requires_grad_(True) for k, v in fast.items()}
        rates = [float(r) for r in rates]
    out = {}
    for n in range(len(base) + 1):
        if n in report:
            with contextlib.nullcontext() if graph else torch.no_grad():
                pred = functional_forward(fast, task.x_te)
                out[n] = _log_mse(pred if graph else pred.clamp(0, 1), task.y_te)
        if n == len(base):
            break
        loss = (functional_forward(fast, task.x_tr) - task.y_tr).abs().mean()
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=graph)
        fast = {k: v - rates[n] * g for (k, v), g in zip(fast.items(), grads)}
        if not graph:
            fast = {k: v.detach().requires_grad_(True) for k, v in fast.items()}
    return out


def _psnr(log_mse: float) -> float:
    return -10.0 * log_mse / math.log(10.0)


def evaluate(params, log_a, log_g, tasks, base, report) -> dict[str, float]:
    """Mean PSNR after each step in ``report`` over fixed ``tasks`` (no second order)."""
    acc = {n: 0.0 for n in report}
    for t in tasks:
        for n, v in unrolled_losses(params, log_a, log_g, t, base, report, graph=False).items():
            acc[n] += _psnr(float(v)) / len(tasks)
    return {f"eval_psnr_{n}": v for n, v in acc.items()}


def add_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--weights", required=True, help="the meta-learned weights file to tune")
    p.add_argument("--out", required=True, help="folder: ckpt.pt, log.jsonl, tuned.safetensors")
    p.add_argument("--data", default=DEFAULT_DATA, help="HR training images [%(default)s]")
    p.add_argument("--steps", type=int, default=10, help="adaptation steps unrolled (K) [%(default)s]")
    p.add_argument("--iters", type=int, default=150, help="outer iterations [%(default)s]")
    p.add_argument("--tasks", type=int, default=2, help="tasks per outer iteration [%(default)s]")
    p.add_argument("--patch", type=int, default=128, help="HR patch side of a task [%(default)s]")
    p.add_argument("--n-patches", type=int, default=1, help="patches per task, all from one image [%(default)s]")
    p.add_argument("--lr", type=float, default=0.03, help="Adam rate of the log-scales [%(default)s]")
    p.add_argument("--no-global", action="store_true", help="keep the schedule, learn the layer scales only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--subsampling", choices=["direct", "bicubic"], default="direct")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-tasks", type=int, default=16,
                   help="fixed held-in training tasks (their own seed) scored every --eval-every iterations, "
                        "paired: the same tasks every time, so the curve is not the batches' noise [%(default)s]")
    p.add_argument("--eval-every", type=int, default=10, help="[%(default)s]")
    p.add_argument("--eval-patch", type=int, default=192, help="HR patch side of the fixed tasks [%(default)s]")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--time-budget", type=float, default=0.0, help="stop after this many seconds (0 = none)")
    return p


def run(args) -> dict:
    torch.set_num_threads(max(1, args.threads))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    params, meta = model.load_weights(args.weights)
    params = {k: v.detach() for k, v in params.items()}
    base = model.schedule_from_metadata(meta, args.weights) or default_lr_schedule(args.steps)
    base = (list(base) + [base[-1]] * args.steps)[: args.steps]
    n_layers = sum(1 for k in params if k.endswith(".weight"))
    log_a = torch.zeros(n_layers, requires_grad=True)
    log_g = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([log_a] + ([] if args.no_global else [log_g]), lr=args.lr)
    ckpt = out / "ckpt.pt"
    it = 0
    if args.resume and (ckpt.exists() or ckpt.with_name("ckpt.pt.prev").exists()):
        st = ckpt_mod.load_checkpoint(ckpt)
        with torch.no_grad():
            log_a.copy_(st["params"]["log_a"])
            log_g.copy_(st["params"]["log_g"])
        opt.load_state_dict(st["optimizer"])
        it = int(st["step"])
    images = load_folder(args.data, min_side=max(args.patch, args.eval_patch if args.eval_tasks else 0))
    sampler = PatchSampler(images)
    log = JsonlLogger(out / "log.jsonl")
    log.log(kind="event", event="start" if it == 0 else "resume", step=it, config=vars(args), base=base)
    report = (0, 1, args.steps)
    t0 = time.perf_counter()
    eval_tasks = [sample_task(sampler, step_rng(args.seed + 10_007, 0, i), patch=args.eval_patch, n_train=1, n_test=0,
                              scale=args.scale, subsampling=args.subsampling, inner="son", one_image=True)
                  for i in range(args.eval_tasks)]

    def run_eval(step):
        if not eval_tasks:
            return
        ev = evaluate(params, log_a.detach(), log_g.detach(), eval_tasks, base, report)
        log.log(kind="val", step=step, **ev, log_a=[round(float(v), 4) for v in log_a.detach()],
                log_g=[round(float(v), 4) for v in log_g.detach()], time=time.perf_counter() - t0)
        print(f"[layer-lr] eval at {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in ev.items()), flush=True)

    if it == 0:
        run_eval(0)

    def save(step):
        ckpt_mod.save_checkpoint(ckpt, {"params": {"log_a": log_a.detach(), "log_g": log_g.detach()},
                                        "optimizer": opt.state_dict(), "step": step, "rng": ckpt_mod.rng_state()})
        export(out / "tuned.safetensors", params, log_a, log_g, base, meta, step=step)

    while it < args.iters:
        opt.zero_grad(set_to_none=True)
        psnr = {n: 0.0 for n in report}
        total = 0.0
        for t in range(args.tasks):
            task = sample_task(sampler, step_rng(args.seed, it, t), patch=args.patch, n_train=args.n_patches,
                               n_test=0, scale=args.scale, subsampling=args.subsampling, inner="son",
                               one_image=True)
            ls = unrolled_losses(params, log_a, log_g, task, base, report)
            loss = (ls[1] + ls[args.steps]) / (2 * args.tasks)
            loss.backward()
            total += float(loss.detach())
            for n in report:
                psnr[n] += _psnr(float(ls[n].detach())) / args.tasks
        check_finite(torch.tensor(total), it, "layer-lr loss", ckpt)
        opt.step()
        it += 1
        log.log(kind="train", step=it, loss=total, **{f"psnr_{n}": v for n, v in psnr.items()},
                log_a=[round(float(v), 4) for v in log_a.detach()], log_g=[round(float(v), 4) for v in log_g.detach()],
                time=time.perf_counter() - t0)
        print(f"[layer-lr] it {it}: psnr_1 {psnr[1]:.3f} psnr_{args.steps} {psnr[args.steps]:.3f} "
              f"g {[round(float(v), 3) for v in torch.exp(log_g.detach())]} "
              f"rates {effective_rates(log_a)['weight']}", flush=True)
        if it % args.eval_every == 0 or it == args.iters:
            run_eval(it)
        if it % 10 == 0 or it == args.iters:
            save(it)
        if args.time_budget and time.perf_counter() - t0 > args.time_budget:
            break
    save(it)
    log.close()
    return {"step": it, "log_a": log_a.detach(), "log_g": log_g.detach()}


def export(path, params, log_a, log_g, base, meta, **extra) -> None:
    """Write the folded file with the scaled ``lr_schedule`` in its metadata."""
    with torch.no_grad():
        folded = fold(params, log_a.detach())
        sched = [float(v) for v in _schedule(base, log_g.detach())]
    md = {k: v for k, v in meta.items() if k != model.LR_SCHEDULE_KEY}
    md.update({model.LR_SCHEDULE_KEY: json.dumps([round(v, 8) for v in sched]),
               "layer_lr": json.dumps(effective_rates(log_a)), **{k: str(v) for k, v in extra.items()}})
    model.save_weights(path, folded, md)


def main(argv=None) -> int:
    p = add_args(argparse.ArgumentParser(prog="python -m mzsr_fast.train.layer_lr", description=__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    run(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
