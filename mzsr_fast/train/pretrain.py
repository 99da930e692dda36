"""Large-scale pretraining (the "transfer" stage of SPEC section 3): bicubic x``scale``
SR on HR patches, L1 loss, Adam with the learning rate halved every ``--lr-halve-every``
steps down to ``--lr-min``.

    python -m mzsr_fast.train.pretrain --out runs/pre_x2 [--resume] [--steps N] ...
    mzsr-fast pretrain --out runs/pre_x2 ...

Run folder: ``ckpt.pt`` (atomic, resumable), ``log.jsonl``, ``plot.png``,
``best.safetensors`` (best validation ``--best-metric``), ``last.safetensors``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

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
from .data import PatchSampler, load_folder, sample_pretrain_batch, step_rng
from .log import JsonlLogger, make_bar, plot_log

__all__ = ["add_args", "run", "main", "lr_at"]


def add_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    g = p.add_argument_group("pretraining (SPEC section 3 defaults)")
    g.add_argument("--scale", type=int, default=2)
    g.add_argument("--patch", type=int, default=96, help="HR patch side [%(default)s]")
    g.add_argument("--batch", type=int, default=32, help="[%(default)s]")
    g.add_argument("--lr", type=float, default=4e-4, help="Adam learning rate [%(default)s]")
    g.add_argument("--lr-halve-every", type=int, default=100_000, help="[%(default)s]")
    g.add_argument("--lr-min", type=float, default=1e-4, help="floor of the halving schedule [%(default)s]")
    g.add_argument("--steps", type=int, default=500_000, help="total steps [%(default)s]")
    g.add_argument("--lr-by-time", action="store_true",
                   help="cosine decay from --lr to --lr-min over --time-budget instead of step halving")
    add_common_args(p)
    return p


def lr_at(step: int, lr: float, halve_every: int, lr_min: float) -> float:
    return max(lr * 0.5 ** (step // max(1, halve_every)), min(lr, lr_min))


def _load_init(args, dev):
    if args.init:
        params, _ = model.load_weights(args.init, device=dev)
    else:
        params = model.init_params(args.seed, device=dev)
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}


def run(args, *, images=None, sampler=None) -> dict:
    """Train per ``args`` (see :func:`add_args`).  ``images`` (list of ``(3, H, W) uint8``)
    overrides ``--data`` (tests).  Returns ``{"step", "best", "params"}``."""
    info, dev = dist_mod.init(args.device)  # torchrun: the batch is split over the ranks
    args.device = str(dev)
    setup_torch(args)
    out = Path(args.out)
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "ckpt.pt"
    val_setting = args.val_setting or "g20"
    if args.patch % args.scale:
        raise SystemExit(f"--patch {args.patch} must be divisible by --scale {args.scale}")

    params = _load_init(args, dev)
    opt = torch.optim.Adam(list(params.values()), lr=args.lr)
    step, best, time_offset = 0, {}, 0.0
    if args.resume and (ckpt_path.exists() or ckpt_path.with_name("ckpt.pt.prev").exists()):
        st = ckpt_mod.load_checkpoint(ckpt_path)
        with torch.no_grad():
            for k, v in params.items():
                v.copy_(st["params"][k])
        opt.load_state_dict(st["optimizer"])
        ckpt_mod.set_rng_state(st["rng"])
        step, best, time_offset = int(st["step"]), dict(st.get("best", {})), float(st.get("time", 0.0))
    elif args.resume and info.main:
        print(f"[pretrain] --resume: no checkpoint in {out}, starting fresh", file=sys.stderr)
    with torch.no_grad():
        dist_mod.broadcast_(list(params.values()), info)

    if sampler is None:
        if images is None:
            images = load_folder(args.data, min_side=args.patch)
        sampler = PatchSampler(images, flat_threshold=args.flat_threshold)
    from .validate import validation_round, validation_setup  # imports the API: only when training runs

    valset, val_steps = validation_setup(args, val_setting, info.main)

    log = JsonlLogger(out / "log.jsonl", enabled=info.main)
    log.log(kind="event", event="start" if step == 0 else "resume", step=step, machine=machine_desc(dev),
            config={k: v for k, v in vars(args).items() if k != "func"})
    timer = Timer(time_offset)
    last_ckpt_t = time.perf_counter()
    meta = dict(stage="pretrain", scale=args.scale, subsampling="bicubic", data=str(args.data),
                patch=args.patch, batch=args.batch, machine=machine_desc(dev))

    def save(step_next: int) -> None:
        if not info.main:
            return
        ckpt_mod.save_checkpoint(ckpt_path, {
            "params": params, "optimizer": opt.state_dict(), "step": step_next, "rng": ckpt_mod.rng_state(),
            "best": best, "time": timer.total(), "config": {k: v for k, v in vars(args).items() if k != "func"},
        })
        export_weights(out / "last.safetensors", params, steps=step_next, train_time_s=round(timer.total(), 1), **meta)

    mine = dist_mod.shard(args.batch, info)
    share = len(mine) / args.batch
    bar = make_bar(args.steps, step, "pretrain", enabled=info.main and not args.no_bar)
    t_log, n_log = time.perf_counter(), 0
    try:
        while step < args.steps:
            if getattr(args, "lr_by_time", False) and args.time_budget:
                frac = min(1.0, timer.session() / args.time_budget)
                lr = args.lr_min + (args.lr - args.lr_min) * 0.5 * (1 + math.cos(math.pi * frac))
            else:
                lr = lr_at(step, args.lr, args.lr_halve_every, args.lr_min)
            for gr in opt.param_groups:
                gr["lr"] = lr
            rng = step_rng(args.seed, step)
            x, y = sample_pretrain_batch(sampler, rng, batch=args.batch, patch=args.patch, scale=args.scale)
            if info.enabled:
                x, y = x[mine], y[mine]
            x, y = fmt(x.to(dev, non_blocking=True), args), fmt(y.to(dev, non_blocking=True), args)
            with autocast(args, dev):
                pred = model.forward(params, x)
            # this rank's share of the mean over the whole batch
            loss = (pred.float() - y).abs().mean() * share
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if info.enabled:
                lt = loss.detach().reshape(1).double()
                dist_mod.allreduce_sum_([p.grad for p in params.values()] + [lt], info)
                loss = lt
            lv = check_finite(loss, step, "pretraining loss", ckpt_path)
            opt.step()
            step += 1
            n_log += 1
            bar.update(1)
            if step % args.log_every == 0 or step == args.steps:
                now = time.perf_counter()
                its = n_log / max(now - t_log, 1e-9)
                t_log, n_log = now, 0
                log.log(kind="train", step=step, loss=lv, lr=lr, it_s=its, time=timer.total())
                bar.set_postfix(loss=f"{lv:.4f}", lr=f"{lr:.1e}")
            if valset is not None and step % args.val_every == 0:
                best = validation_round(params, valset, val_steps, step=step, device=dev, args=args, out=out,
                                        best=best, log=log, bar=bar, prefix="pretrain", train_time_s=timer.total(),
                                        meta=meta)
            if args.plot_every > 0 and step % args.plot_every == 0:
                try:
                    plot_log(out / "log.jsonl")
                except Exception as e:  # noqa: BLE001 - a plot must never stop training
                    bar.write(f"[pretrain] plot failed: {e}")
            t_now = time.perf_counter()
            due = step % args.ckpt_every == 0 or t_now - last_ckpt_t >= args.ckpt_every_s
            stop = (bool(args.time_budget) and timer.session() >= args.time_budget) or stop_requested()
            if info.enabled:  # clock decisions: the ranks must agree
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
    dist_mod.barrier(info)
    return {"step": step, "best": best, "params": {k: v.detach() for k, v in params.items()}, "info": info}


def main(argv=None) -> int:
    p = add_args(argparse.ArgumentParser(prog="python -m mzsr_fast.train.pretrain", description=__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    args = p.parse_args(argv)
    return run_entry(run, args, err_prefix="", done="[pretrain] done at step {step}; best {best}")


if __name__ == "__main__":
    sys.exit(main())
