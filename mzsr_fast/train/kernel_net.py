"""Train the blur-kernel predictor (:mod:`mzsr_fast.kernel_net`) on ``../shared/data/train``.

Each sample: a random HR crop of a training image (flat crops rejected, one of the 8
flips/rotations), blurred with a random Gaussian and subsampled by the exact degradation
(:func:`mzsr_fast.degradation.degrade`, quantised to 8 bits as the test LR images are); the
target is the kernel's log-covariance (:func:`mzsr_fast.kernel_net.params_to_logcov`).
Kernels: 35% isotropic, 65% anisotropic with both variances log-uniform in
``[var_min, var_max]`` HR pixels^2 and a uniform angle: the paper's settings (var 0.2, 2.0,
the (4, 1) anisotropic one) and the random setting of the evaluation (variances in
``[1, 2.5 s]``) all lie inside.  Every 10th training image is held out for the validation
printed in the log (Set5/Set14 are never read here).

    python -m mzsr_fast.train.kernel_net --out runs/kernel_net_x2d --iters 4000 --time-budget 3000
    (the same command again resumes from ``out/ckpt.pt``)

Writes ``out/log.jsonl`` (loss, validation error per ``--val-every``), ``out/ckpt.pt``
(network, Adam, step) and ``out/kernelnet.safetensors`` (the latest weights); ship by copying
that file to ``mzsr_fast/weights/kernelnet_x<s>_<sub>.safetensors`` and recording its SHA-256.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import signal
import time
from pathlib import Path

import numpy as np
import torch

from .. import kernel_net as kn
from ..degradation import degrade, gaussian_kernel
from ..kernel_estimate import KERNEL_SIZE
from .checkpoint import load_checkpoint, save_checkpoint
from .common import DEFAULT_DATA
from .data import augment, load_folder



def sample_kernel(rng: np.random.Generator, vmin: float, vmax: float) -> tuple[float, float, float]:
    """``(var1, var2, theta)``: isotropic with probability 0.35, else anisotropic."""
    lo, hi = math.log(vmin), math.log(vmax)
    if rng.random() < 0.35:
        v = math.exp(rng.uniform(lo, hi))
        return v, v, 0.0
    a, b = sorted(np.exp(rng.uniform(lo, hi, 2)).tolist(), reverse=True)
    return a, b, float(rng.uniform(0.0, math.pi))


def make_batch(images, rng, n: int, patch: int, scale: int, subsampling: str, vmin: float, vmax: float,
               flat_std: float = 0.03):
    """``(lr (n, 3, patch, patch) float32, target (n, 3) float32)``."""
    pad = KERNEL_SIZE // 2 + 1  # HR pixels of context so the blur never sees the crop's border
    side = patch * scale + 2 * pad * scale
    lrs, tgts = [], []
    while len(lrs) < n:
        img = images[int(rng.integers(len(images)))]
        h, w = img.shape[-2:]
        if h < side or w < side:
            continue
        y, x = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        hr = augment(img[:, y:y + side, x:x + side], int(rng.integers(8))).float() / 255.0
        if float(hr.mean(0).std()) < flat_std:
            continue
        v1, v2, th = sample_kernel(rng, vmin, vmax)
        lr = degrade(hr, gaussian_kernel(KERNEL_SIZE, v1, v2, th), scale, subsampling, quantize=True)
        lrs.append(lr[:, pad:pad + patch, pad:pad + patch])
        tgts.append(torch.from_numpy(kn.params_to_logcov(v1, v2, th)).float())
    return torch.stack(lrs), torch.stack(tgts)


def loss_fn(pred: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius distance between the log-covariance matrices (off-diagonal twice)."""
    d = pred - tgt
    return (d[:, 0] ** 2 + d[:, 1] ** 2 + 2 * d[:, 2] ** 2).mean()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mzsr_fast.train.kernel_net", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--subsampling", default="direct", choices=["direct", "bicubic"])
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--depth", type=int, default=7)
    p.add_argument("--patch", type=int, default=48, help="LR patch side [%(default)s]")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iters", type=int, default=4000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--var-min", type=float, default=0.12)
    p.add_argument("--var-max", type=float, default=6.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--time-budget", type=float, default=3600.0)
    p.add_argument("--val-every", type=int, default=200)
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--init", default=None, help="start from these kernel-net weights (a fine-tune) [fresh]")
    p.add_argument("--max-images", type=int, default=None, help="(tests) read only the first N images")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    images = load_folder(a.data, max_images=a.max_images)
    held = images[::10]
    train = [im for i, im in enumerate(images) if i % 10] or images
    val_x, val_t = make_batch(held, np.random.default_rng(12345), 64, a.patch, a.scale, a.subsampling,
                              a.var_min, a.var_max)
    net = copy.deepcopy(kn.load(a.init)).train() if a.init else kn.KernelNet(a.width, a.depth)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    step = 0
    ck = out / "ckpt.pt"
    if ck.exists() or ck.with_name(ck.name + ".prev").exists():
        st = load_checkpoint(ck)
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        step = int(st["step"])
        print(f"[kernel-net] resumed at step {step}", flush=True)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    meta = dict(scale=a.scale, subsampling=a.subsampling, var_min=a.var_min, var_max=a.var_max,
                patch=a.patch, data=str(a.data), init=str(a.init))

    def checkpoint():
        save_checkpoint(ck, {"net": net.state_dict(), "opt": opt.state_dict(), "step": step})
        kn.save(out / "kernelnet.safetensors", net, dict(meta, step=step))

    log = open(out / "log.jsonl", "a")
    t0 = time.time()
    run_loss = None
    while step < a.iters and not stop["now"] and time.time() - t0 < a.time_budget:
        lr_now = a.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / a.iters)))
        for g in opt.param_groups:
            g["lr"] = lr_now
        x, t = make_batch(train, np.random.default_rng([a.seed, step]), a.batch, a.patch, a.scale, a.subsampling,
                          a.var_min, a.var_max)
        loss = loss_fn(net(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        lv = float(loss.detach())
        run_loss = lv if run_loss is None else 0.95 * run_loss + 0.05 * lv
        if step % a.val_every == 0 or step == a.iters:
            net.eval()
            with torch.no_grad():
                pv = net(val_x)
            net.train()
            rec = dict(step=step, time=round(time.time() - t0, 1), loss=run_loss, lr=lr_now,
                       val_loss=float(loss_fn(pv, val_t)),
                       val_mae_logvar=float((pv[:, :2] - val_t[:, :2]).abs().mean()))
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(f"[kernel-net] {rec}", flush=True)
        if step % a.ckpt_every == 0:
            checkpoint()
    checkpoint()
    print(f"[kernel-net] stopped at step {step} ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
