"""Meta-transfer learning (SPEC section 3): MAML over random blur kernels, with true
second-order meta-gradients, a first-order option, the MAML++ multi-step loss with
annealed weights and an optional L1 term on the pretraining (bicubic) objective.

    python -m mzsr_fast.train.meta --out runs/meta_x2 --init pretrain.safetensors [--first-order] ...
    torchrun --nproc_per_node=N -m mzsr_fast.train.meta ...      # meta-batch split over ranks
    mzsr-fast meta-train ...

One meta-iteration, for each task ``T = (D_tr, D_te)`` of the meta-batch (``theta`` the
current weights, ``f`` the network)::

    theta_0 = theta
    theta_{i+1} = theta_i - alpha * grad L1(f(theta_i, x_tr), y_tr)     # i < K, graph kept
    L_T = sum_i w_i * L1(f(theta_i, x_te), y_te)    (i = 1..K; w = (0, .., 0, 1) without MSL)

    theta <- Adam(beta)( mean_T grad_theta L_T  [+ lambda * grad L1_pretrain(theta)] )

Second order: the inner gradients are computed with ``create_graph=True`` (via
``torch.func.functional_call`` so parameters are plain tensors), so ``grad_theta L_T``
includes the Hessian-vector terms.  First order (FOMAML): inner gradients are constants,
so ``d theta_i / d theta = I``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch.func import functional_call

from .. import model
from . import checkpoint as ckpt_mod
from . import dist as dist_mod
from .common import (
    Timer,
    add_common_args,
    autocast,
    check_finite,
    export_weights,
    fmt,
    run_entry,
    machine_desc,
    setup_torch,
    stop_requested,
)
from .data import KERNEL_MIX, PatchSampler, load_folder, sample_pretrain_batch, sample_task, step_rng
from .log import JsonlLogger, make_bar, plot_log

__all__ = [
    "functional_forward",
    "l1",
    "msl_weights",
    "adapt",
    "task_meta_loss",
    "meta_gradients",
    "fo_backend_gradients",
    "add_args",
    "run",
    "main",
]

_TEMPLATES: dict = {}


def functional_forward(params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``MZSRNet`` applied with ``params`` through ``torch.func.functional_call``.
    x: ``(N, 3, H, W)`` float; out the same shape."""
    bias = "layers.0.bias" in params
    net = _TEMPLATES.get(bias)
    if net is None:
        with torch.device("meta"):
            net = _TEMPLATES[bias] = model.MZSRNet(bias=bias)
    return functional_call(net, dict(params), (x,))


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error, computed in at least float32 (bf16 autocast outputs are
    upcast; float64 stays float64 for the gradient checks)."""
    dt = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
    return (pred.to(dt) - target.to(dt)).abs().mean()


def msl_weights(k: int, it: int, anneal_iters: int, multi_step: bool = True) -> list[float]:
    """MAML++ multi-step loss weights for ``k`` inner steps at meta-iteration ``it``:
    uniform ``1/k`` at the start; the non-final weights decay linearly to ``0.03/k`` over
    ``anneal_iters`` iterations while the final one grows (the weights always sum to 1).
    ``multi_step=False`` gives ``(0, .., 0, 1)``."""
    if k < 1:
        raise ValueError("inner steps must be >= 1")
    if not multi_step or k == 1:
        return [0.0] * (k - 1) + [1.0]
    decay = 1.0 / k / max(1, anneal_iters)
    floor = 0.03 / k
    w = [max(1.0 / k - it * decay, floor) for _ in range(k - 1)]
    w.append(1.0 - sum(w))
    return w


def step_alpha(alpha: float | Sequence[float], i: int) -> float:
    """The inner learning rate of step ``i`` (0-based): ``alpha`` itself, or ``alpha[i]``
    with the last value repeating."""
    if isinstance(alpha, (int, float)):
        return float(alpha)
    return float(alpha[min(i, len(alpha) - 1)])


def parse_alpha(s: str) -> float | tuple[float, ...]:
    """``--alpha``: ``0.01`` or a per-step list ``0.02,0.01``."""
    vals = tuple(float(v) for v in str(s).split(",") if v.strip())
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"--alpha needs positive rates, got {s!r}")
    return vals[0] if len(vals) == 1 else vals


def adapt(
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    alpha: float | Sequence[float],
    *,
    first_order: bool = False,
    forward: Callable = functional_forward,
    amp=None,
) -> list[dict[str, torch.Tensor]]:
    """Inner loop: ``steps`` plain SGD steps of L1 on ``(x, y)`` at ``alpha`` (one rate, or
    one per step with the last repeating, as a test-time ``lr_schedule``).  Returns the list
    of the adapted parameter dicts ``[theta_1, .., theta_K]``, differentiable w.r.t.
    ``params`` (second order: through the inner gradients; first order: as identity)."""
    fast = dict(params)
    out = []
    for i in range(steps):
        a = step_alpha(alpha, i)
        with amp() if amp else _null():
            pred = forward(fast, x)
        loss = l1(pred, y)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order)
        fast = {k: v - a * g for (k, v), g in zip(fast.items(), grads)}
        out.append(fast)
    return out


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def task_meta_loss(
    params: Mapping[str, torch.Tensor],
    task,
    *,
    inner_steps: int,
    alpha: float | Sequence[float],
    weights: Sequence[float],
    first_order: bool = False,
    forward: Callable = functional_forward,
    amp=None,
) -> torch.Tensor:
    """``L_T = sum_i w_i L1(f(theta_i, x_te), y_te)`` for one task (scalar, differentiable
    w.r.t. ``params``); steps with weight 0 are not evaluated."""
    fasts = adapt(params, task.x_tr, task.y_tr, inner_steps, alpha, first_order=first_order, forward=forward, amp=amp)
    total = None
    for w, fast in zip(weights, fasts):
        if w == 0:
            continue
        with amp() if amp else _null():
            pred = forward(fast, task.x_te)
        term = w * l1(pred, task.y_te)
        total = term if total is None else total + term
    return total


def meta_gradients(
    params: Mapping[str, torch.Tensor],
    tasks: Sequence,
    *,
    meta_batch: int,
    inner_steps: int,
    alpha: float | Sequence[float],
    weights: Sequence[float],
    first_order: bool = False,
    forward: Callable = functional_forward,
    amp=None,
    pretrain: tuple[torch.Tensor, torch.Tensor, float] | None = None,
) -> tuple[list[torch.Tensor], float]:
    """Sum over ``tasks`` of ``grad L_T / meta_batch`` (one backward per task, so only one
    task's graph is alive at a time), plus ``lambda * grad L1`` of the pretraining batch
    ``pretrain = (x, y, lambda * share)`` if given.  Returns ``(grads in params order,
    summed loss value)``.  With all tasks on one rank the result is the meta-gradient."""
    keys = list(params)
    leaves = [params[k] for k in keys]
    acc = [torch.zeros_like(p) for p in leaves]
    total = 0.0
    for task in tasks:
        loss = task_meta_loss(params, task, inner_steps=inner_steps, alpha=alpha, weights=weights,
                              first_order=first_order, forward=forward, amp=amp) / meta_batch
        g = torch.autograd.grad(loss, leaves)
        for a, gi in zip(acc, g):
            a.add_(gi)
        total += float(loss.detach())
    if pretrain is not None:
        x, y, lam = pretrain
        with amp() if amp else _null():
            pred = forward(params, x)
        loss = lam * l1(pred, y)
        g = torch.autograd.grad(loss, leaves)
        for a, gi in zip(acc, g):
            a.add_(gi)
        total += float(loss.detach())
    return acc, total


def fo_backend_gradients(
    params: Mapping[str, torch.Tensor],
    tasks: Sequence,
    backend,
    *,
    meta_batch: int,
    inner_steps: int,
    alpha: float | Sequence[float],
    weights: Sequence[float],
) -> tuple[list[torch.Tensor], float]:
    """First-order meta-gradients computed with an adaptation backend (``mzsr_fast.backends``:
    the compiled CPU path, Triton, CUDA) instead of autograd: per task, ``prepare`` the
    current weights, take the ``inner_steps`` SGD steps with ``backend.step`` and, after
    each step with a non-zero multi-step weight, add ``w_i * backend.grads(x_te, y_te) /
    meta_batch``.  Equal to ``meta_gradients(..., first_order=True)`` up to float rounding.
    Tasks must have ``n_train == n_test`` (backends allocate for one shape)."""
    keys = list(params)
    acc = [torch.zeros_like(params[k]) for k in keys]
    p0 = {k: v.detach() for k, v in params.items()}
    total = 0.0
    for task in tasks:
        if task.x_tr.shape != task.x_te.shape:
            raise ValueError("fo_backend_gradients needs n_train == n_test and equal patch shapes")
        backend.prepare(p0, tuple(task.x_tr.shape))
        x_tr, y_tr = task.x_tr.contiguous(), task.y_tr.contiguous()
        x_te, y_te = task.x_te.contiguous(), task.y_te.contiguous()
        for i in range(inner_steps):
            backend.step(x_tr, y_tr, step_alpha(alpha, i))
            w = weights[i]
            if w == 0:
                continue
            loss, g = backend.grads(x_te, y_te)
            for a, k in zip(acc, keys):
                a.add_(g[k].to(a.device, a.dtype), alpha=w / meta_batch)
            total += w * float(loss) / meta_batch
    return acc, total


# ----------------------------------------------------------------------------- CLI / loop
def _parse_mix(s: str) -> dict:
    out = {}
    for part in s.split(","):
        if part.strip():
            k, v = part.split("=")
            out[k.strip()] = float(v)
    bad = set(out) - set(KERNEL_MIX)
    if bad or not out:
        raise argparse.ArgumentTypeError(f"kernel mix must be kind=prob with kinds {sorted(KERNEL_MIX)}, got {s!r}")
    return out


def add_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = p.add_argument_group("meta-transfer learning (SPEC section 3 defaults)")
    g.add_argument("--scale", type=int, default=2)
    g.add_argument("--subsampling", choices=["direct", "bicubic"], default="direct")
    g.add_argument("--patch", type=int, default=64, help="HR patch side [%(default)s]")
    g.add_argument("--n-train", type=int, default=8, help="patches per task in D_tr (inner) [%(default)s]")
    g.add_argument("--n-test", type=int, default=8, help="patches per task in D_te (outer) [%(default)s]")
    g.add_argument("--inner-steps", type=int, default=5, help="[%(default)s]")
    g.add_argument("--inner-data", choices=["hr", "son"], default="hr",
                   help="inner split: 'hr' (SPEC: LR-up -> HR of n-train patches, outer on n-test others) or 'son' "
                        "(as at test time: LR-son -> LR, outer LR-up -> HR, both on all n-train + n-test patches; "
                        "autograd inner loop only) [%(default)s]")
    g.add_argument("--task-images", choices=["mixed", "one"], default="mixed",
                   help="where a task's patches come from: 'mixed' (each patch from its own random image) or "
                        "'one' (all from one image, as a test image's adaptation sees one) [%(default)s]")
    g.add_argument("--alpha", type=parse_alpha, default=1e-2,
                   help="inner SGD learning rate, or one per inner step (0.02,0.01: the last repeats) [%(default)s]")
    g.add_argument("--beta", type=float, default=1e-4, help="outer Adam learning rate [%(default)s]")
    g.add_argument("--outer-optim", choices=["adam", "sgd"], default="adam",
                   help="outer optimizer (sgd: plain, for exact distributed comparisons) [%(default)s]")
    g.add_argument("--beta-halve-every", type=int, default=0, help="halve beta every N iterations (0 = never)")
    g.add_argument("--meta-batch", type=int, default=5, help="tasks per meta-iteration [%(default)s]")
    g.add_argument("--steps", type=int, default=100_000, help="meta-iterations [%(default)s]")
    g.add_argument("--first-order", action="store_true", help="first-order MAML for all iterations")
    g.add_argument("--first-order-steps", type=int, default=0,
                   help="first-order for the first N iterations, then second order [%(default)s]")
    g.add_argument("--first-order-time", type=float, default=0.0,
                   help="first-order for the first S seconds of this process, then second order [%(default)s]")
    g.add_argument("--inner-backend", default="autograd",
                   help="first-order iterations: 'autograd' or an adaptation backend (cpu, triton, cuda, reference) "
                        "that runs the inner loop and the outer gradient [%(default)s]")
    g.add_argument("--no-multi-step", action="store_true", help="outer loss on the last inner step only")
    g.add_argument("--anneal-iters", type=int, default=10_000,
                   help="multi-step loss weights anneal toward the last step over N iterations [%(default)s]")
    g.add_argument("--pretrain-weight", type=float, default=0.0,
                   help="weight of an extra L1 term on the bicubic pretraining objective (0 = off)")
    g.add_argument("--pretrain-batch", type=int, default=8)
    g.add_argument("--kernel-mix", type=_parse_mix, default=dict(KERNEL_MIX),
                   help="kernel kinds and probabilities [aniso=0.6,iso=0.25,narrow=0.15]")
    g.add_argument("--noise-max", type=float, default=0.0, help="max Gaussian noise std on LR ([0,1] scale)")
    g.add_argument("--grad-clip", type=float, default=0.0, help="clip the meta-gradient norm (0 = off)")
    g.add_argument("--ema", type=float, default=0.0,
                   help="keep an exponential moving average of the weights with this decay (e.g. 0.995; 0 = off): "
                        "validations, best.safetensors and ema.safetensors are the average's [%(default)s]")
    g.add_argument("--save-rank-weights", action="store_true", help=argparse.SUPPRESS)  # tests: OUT/rank{r}.safetensors
    add_common_args(p)
    return p


def _tasks_for(step: int, indices, sampler, args):
    return [
        sample_task(sampler, step_rng(args.seed, step, i), patch=args.patch, n_train=args.n_train,
                    n_test=args.n_test, scale=args.scale, subsampling=args.subsampling,
                    mix=args.kernel_mix, noise_max=args.noise_max, inner=args.inner_data,
                    one_image=args.task_images == "one")
        for i in indices
    ]


def _to(task, dev, args):
    for f in ("x_tr", "y_tr", "x_te", "y_te"):
        setattr(task, f, fmt(getattr(task, f).to(dev, non_blocking=True), args))
    return task


def run(args, *, images=None, sampler=None) -> dict:
    """Meta-train per ``args`` (see :func:`add_args`).  ``images``/``sampler`` override
    ``--data`` (tests, GPU patch banks).  Returns ``{"step", "best", "params"}``."""
    info, dev = dist_mod.init(args.device)
    args.device = str(dev)
    setup_torch(args)
    out = Path(args.out)
    ckpt_path = out / "ckpt.pt"
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
    if args.patch % args.scale:
        raise SystemExit(f"--patch {args.patch} must be divisible by --scale {args.scale}")
    if not 0.0 <= args.ema < 1.0:
        raise SystemExit(f"--ema {args.ema}: a decay in [0, 1) (0 = off)")
    val_setting = args.val_setting or ("b13" if args.subsampling == "bicubic" else "g20")

    if args.init:
        p0, _ = model.load_weights(args.init, device=dev)
    else:
        p0 = model.init_params(args.seed, device=dev)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in p0.items()}
    keys = list(params)
    opt_cls = torch.optim.Adam if args.outer_optim == "adam" else torch.optim.SGD
    opt = opt_cls([params[k] for k in keys], lr=args.beta)
    step, best, time_offset, ema_state = 0, {}, 0.0, None
    if args.resume and (ckpt_path.exists() or ckpt_path.with_name("ckpt.pt.prev").exists()):
        st = ckpt_mod.load_checkpoint(ckpt_path)
        with torch.no_grad():
            for k in keys:
                params[k].copy_(st["params"][k])
        opt.load_state_dict(st["optimizer"])
        ckpt_mod.set_rng_state(st["rng"])
        step, best, time_offset = int(st["step"]), dict(st.get("best", {})), float(st.get("time", 0.0))
        ema_state = st.get("ema")
    elif args.resume and info.main:
        print(f"[meta] --resume: no checkpoint in {out}, starting fresh", file=sys.stderr)
    with torch.no_grad():
        dist_mod.broadcast_([params[k] for k in keys], info)
    # the average starts at the initial (or resumed) weights; every rank holds the same
    # parameters after each all-reduced step, so every rank's average is the same too
    ema = None
    if args.ema > 0:
        src = ema_state if ema_state is not None else params
        ema = {k: src[k].detach().to(dev, torch.float32).clone() for k in keys}

    if sampler is None:
        if images is None:
            images = load_folder(args.data, min_side=args.patch)
        sampler = PatchSampler(images, flat_threshold=args.flat_threshold)
    from .validate import validation_round, validation_setup  # imports the API: only when training runs

    valset, val_steps = validation_setup(args, val_setting, info.main)
    amp = (lambda: autocast(args, dev)) if args.amp != "none" else None

    log = JsonlLogger(out / "log.jsonl", enabled=info.main)
    cfg = {k: v for k, v in vars(args).items() if k != "func"}
    log.log(kind="event", event="start" if step == 0 else "resume", step=step, machine=machine_desc(dev),
            world=info.world, config=cfg)
    timer = Timer(time_offset)
    last_ckpt_t = time.perf_counter()
    meta = dict(stage="meta", scale=args.scale, subsampling=args.subsampling, data=str(args.data), patch=args.patch,
                meta_batch=args.meta_batch, inner_steps=args.inner_steps, inner_data=args.inner_data,
                task_images=args.task_images,
                alpha=args.alpha, beta=args.beta,
                first_order=bool(args.first_order), first_order_steps=args.first_order_steps,
                init=str(args.init), world=info.world, machine=machine_desc(dev))
    # metadata of the averaged weights (ema.safetensors, and best.safetensors when validations see the average)
    meta_ema = dict(meta, ema=args.ema) if ema is not None else meta

    def save(step_next: int) -> None:
        if not info.main:
            return
        ckpt_mod.save_checkpoint(ckpt_path, {
            "params": params, "optimizer": opt.state_dict(), "step": step_next, "rng": ckpt_mod.rng_state(),
            "best": best, "time": timer.total(), "config": cfg, **({"ema": ema} if ema is not None else {}),
        })
        export_weights(out / "last.safetensors", params, steps=step_next, train_time_s=round(timer.total(), 1), **meta)
        if ema is not None:
            export_weights(out / "ema.safetensors", ema, steps=step_next, train_time_s=round(timer.total(), 1),
                           **meta_ema)

    fast_be = None
    if args.inner_backend != "autograd":
        from .. import backends as be_mod

        fast_be = be_mod.get(args.inner_backend, dev, "fp32")
        if args.n_train != args.n_test or args.inner_data != "hr":
            raise SystemExit("--inner-backend needs --n-train == --n-test and --inner-data hr (one shape per task)")
    mine = dist_mod.shard(args.meta_batch, info)
    bar = make_bar(args.steps, step, "meta-train", enabled=info.main and not args.no_bar)
    t_log, n_log = time.perf_counter(), 0
    try:
        while step < args.steps:
            beta = args.beta * (0.5 ** (step // args.beta_halve_every) if args.beta_halve_every else 1.0)
            for gr in opt.param_groups:
                gr["lr"] = beta
            fo_time = getattr(args, "first_order_time", 0.0)
            first_order = bool(args.first_order) or step < args.first_order_steps
            if not first_order and fo_time > 0:
                # a clock decision: the ranks must agree on it (rank 0's clock wins)
                first_order = timer.session() < fo_time
                if info.enabled:
                    flag = torch.tensor([1.0 if first_order else 0.0], device=dev)
                    dist_mod.broadcast_([flag], info)
                    first_order = bool(flag.item() > 0)
            w = msl_weights(args.inner_steps, step, args.anneal_iters, not args.no_multi_step)
            tasks = [_to(t, dev, args) for t in _tasks_for(step, mine, sampler, args)]
            pre = None
            if args.pretrain_weight > 0:
                rng = step_rng(args.seed, step, 1_000_000)
                x, y = sample_pretrain_batch(sampler, rng, batch=args.pretrain_batch, patch=args.patch, scale=args.scale)
                idx = dist_mod.shard(args.pretrain_batch, info)
                if idx:
                    share = len(idx) / args.pretrain_batch
                    pre = (fmt(x[idx].to(dev), args), fmt(y[idx].to(dev), args), args.pretrain_weight * share)
            if first_order and fast_be is not None:
                grads, loss_local = fo_backend_gradients(params, tasks, fast_be, meta_batch=args.meta_batch,
                                                         inner_steps=args.inner_steps, alpha=args.alpha, weights=w)
                if pre is not None:
                    g2, l2 = meta_gradients(params, [], meta_batch=args.meta_batch, inner_steps=args.inner_steps,
                                            alpha=args.alpha, weights=w, amp=amp, pretrain=pre)
                    grads = [a + b for a, b in zip(grads, g2)]
                    loss_local += l2
            else:
                grads, loss_local = meta_gradients(
                    params, tasks, meta_batch=args.meta_batch, inner_steps=args.inner_steps, alpha=args.alpha,
                    weights=w, first_order=first_order, amp=amp, pretrain=pre)
            lt = torch.tensor([loss_local], dtype=torch.float64, device=dev)
            dist_mod.allreduce_sum_(grads + [lt], info)
            lv = check_finite(lt, step, "meta loss", ckpt_path)
            gn = torch.sqrt(sum((g.double() ** 2).sum() for g in grads))
            check_finite(gn, step, "meta-gradient norm", ckpt_path)
            if args.grad_clip > 0 and float(gn) > args.grad_clip:
                for g in grads:
                    g.mul_(args.grad_clip / float(gn))
            for k, g in zip(keys, grads):
                params[k].grad = g
            opt.step()
            opt.zero_grad(set_to_none=True)
            if ema is not None:
                with torch.no_grad():
                    for k in keys:
                        ema[k].lerp_(params[k].detach(), 1.0 - args.ema)
            step += 1
            n_log += 1
            bar.update(1)
            if step % args.log_every == 0 or step == args.steps:
                now = time.perf_counter()
                its = n_log / max(now - t_log, 1e-9)
                t_log, n_log = now, 0
                log.log(kind="train", step=step, loss=lv, grad_norm=float(gn), beta=beta, it_s=its,
                        first_order=first_order, time=timer.total())
                bar.set_postfix(loss=f"{lv:.4f}", fo=int(first_order))
            if valset is not None and step % args.val_every == 0:
                best = validation_round(ema if ema is not None else params, valset, val_steps, step=step,
                                        device=dev, args=args, out=out,
                                        best=best, log=log, bar=bar, prefix="meta", train_time_s=timer.total(),
                                        meta=meta_ema)
            if info.main and args.plot_every > 0 and step % args.plot_every == 0:
                try:
                    plot_log(out / "log.jsonl")
                except Exception as e:  # noqa: BLE001 - a plot must never stop training
                    bar.write(f"[meta] plot failed: {e}")
            t_now = time.perf_counter()
            due = step % args.ckpt_every == 0 or t_now - last_ckpt_t >= args.ckpt_every_s
            stop = (bool(args.time_budget) and timer.session() >= args.time_budget) or stop_requested()
            # time-based decisions differ between ranks: agree on them
            if info.enabled:
                due, stop = dist_mod.any_flag(due, info, dev), dist_mod.any_flag(stop, info, dev)
            if due:
                save(step)
                last_ckpt_t = t_now
            if stop:
                log.log(kind="event", event="signal" if stop_requested() else "time_budget", step=step,
                        time=timer.total())
                break
        save(step)
    finally:
        bar.close()
        log.close()
    if info.main and args.plot_every > 0:
        try:
            plot_log(out / "log.jsonl")
        except Exception:  # noqa: BLE001
            pass
    if args.save_rank_weights:
        export_weights(out / f"rank{info.rank}.safetensors", params, steps=step)
    dist_mod.barrier(info)
    return {"step": step, "best": best, "params": {k: v.detach() for k, v in params.items()}, "info": info}


def main(argv=None) -> int:
    p = add_args(argparse.ArgumentParser(prog="python -m mzsr_fast.train.meta", description=__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    args = p.parse_args(argv)
    return run_entry(run, args, err_prefix="", done="[meta] done at step {step}; best {best}")


if __name__ == "__main__":
    sys.exit(main())
