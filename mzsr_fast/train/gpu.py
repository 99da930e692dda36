"""Fast training on one GPU within a hard wall-clock budget, and data packing for it.

    python -m mzsr_fast.train.gpu recipe --out OUTDIR --time-budget 200 [--data DIR] [--device cuda]
    python -m mzsr_fast.train.gpu pack SRC_DIR DST_DIR --max-mb 45      # a subset that fits the device carry limit

``recipe`` runs, in one process, starting from the shipped ``pretrain_x2_bicubic`` weights:

1. continued bicubic x2 pretraining (batch 32 of 96^2 patches, Adam 4e-4 -> 1e-4 by time),
2. meta-training for x2 direct: a first-order phase, then second order (SPEC section 3
   task settings: meta-batch 5, 8 + 8 patches of 64^2, 5 inner steps, alpha 1e-2, beta 1e-4),
3. if its share of the budget is non-zero: x2 bicubic meta-training, then x4 (a short x4
   bicubic pretraining from the x2 weights, then x4 direct meta-training),

each stage getting a fixed fraction of ``--time-budget`` (``--shares``).  Data: all images
are decoded once, and a bank of non-flat 112^2 patches is cut and kept on the GPU as
uint8; batches are gathered from it with random crops and the 8 flips/rotations, and
degraded on the GPU with :mod:`mzsr_fast.degradation` (the same code as test time).
Every stage checkpoints every ``--ckpt-every-s`` seconds into ``OUTDIR/<stage>/`` and
writes its final weights (``OUTDIR/<name>.safetensors``) and JSONL log as soon as it ends,
so a run cut short still leaves the finished stages.  ``OUTDIR/summary.json`` records
steps, seconds and validation PSNR (Set5, if found) per stage.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .. import model
from .data import IMAGE_EXTS, augment, load_folder

__all__ = ["BankSampler", "recipe", "pack", "main"]


class BankSampler:
    """Patches from a bank ``(M, 3, B, B) uint8`` on the training device (drop-in for
    :class:`~mzsr_fast.train.data.PatchSampler`: ``sample(rng, n, size)``).

    The bank is cut once from the decoded images (``per_image`` crops per 100k pixels,
    flat ones (luma std < ``flat_threshold``) dropped); a sample is a random bank entry,
    a random ``size``-crop inside it and one of the 8 flips/rotations."""

    def __init__(self, images, *, bank_patch: int = 96, per_mpix: float = 400.0, flat_threshold: float = 8.0,
                 device="cuda", seed: int = 0, max_bank: int = 60_000):
        rng = np.random.default_rng([seed, 12345])
        crops, owner = [], []
        for j, im in enumerate(images):
            h, w = im.shape[1:]
            if min(h, w) < bank_patch:
                continue
            n = max(1, int(round(per_mpix * h * w / 1e6)))
            tops = rng.integers(0, h - bank_patch + 1, n)
            lefts = rng.integers(0, w - bank_patch + 1, n)
            for t, l in zip(tops, lefts):
                crops.append(im[:, t : t + bank_patch, l : l + bank_patch])
                owner.append(j)
        if not crops:
            raise ValueError(f"no training image is at least {bank_patch} px on each side")
        bank, owner = torch.stack(crops), np.asarray(owner)
        if len(bank) > max_bank:
            sel = rng.permutation(len(bank))[:max_bank]
            bank, owner = bank[torch.from_numpy(sel)], owner[sel]
        y = (0.299 * bank[:, 0].float() + 0.587 * bank[:, 1].float() + 0.114 * bank[:, 2].float()).flatten(1)
        keep = y.std(1) >= flat_threshold
        if int(keep.sum()) >= 16:
            bank, owner = bank[keep], owner[keep.numpy()]
        self._owner = owner  # source image of each bank entry, and each image's entries (one-image tasks)
        self._by_image = {int(j): np.flatnonzero(owner == j) for j in np.unique(owner)}
        self.bank = bank.to(device).contiguous()
        self.patch = bank_patch
        self.device = torch.device(device)

    def __len__(self):
        return len(self.bank)

    def sample(self, rng: np.random.Generator, n: int, size: int, *, augment_: bool = True,
               one_image: bool = False) -> torch.Tensor:
        """``(n, 3, size, size) float32`` in [0, 1] on the bank's device.  ``one_image``: all
        from the bank entries of one source image (that of a random entry, so images count
        by area, as in :class:`~mzsr_fast.train.data.PatchSampler`)."""
        if size > self.patch:
            raise ValueError(f"patch {size} > bank patch {self.patch}")
        if one_image:
            group = self._by_image[int(self._owner[int(rng.integers(0, len(self.bank)))])]
            idx = group[rng.integers(0, len(group), n)]
        else:
            idx = rng.integers(0, len(self.bank), n)
        oy = rng.integers(0, self.patch - size + 1, n)
        ox = rng.integers(0, self.patch - size + 1, n)
        codes = rng.integers(0, 8, n) if augment_ else np.zeros(n, np.int64)
        dev = self.device
        ar = torch.arange(size, device=dev)
        i = torch.from_numpy(idx).to(dev)
        rows = torch.from_numpy(oy).to(dev)[:, None] + ar  # (n, size)
        cols = torch.from_numpy(ox).to(dev)[:, None] + ar
        p = self.bank[i[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (n, size, size, 3)
        p = p.permute(0, 3, 1, 2).float().div_(255.0)
        if augment_:
            out = torch.empty_like(p)
            for c in np.unique(codes):
                sel = torch.from_numpy(np.nonzero(codes == c)[0]).to(dev)
                out[sel] = augment(p[sel], int(c))
            p = out
        return p.contiguous()


# ----------------------------------------------------------------------------- recipe
STAGES = ("pre_x2", "meta_x2_direct", "meta_x2_bicubic", "pre_x4", "meta_x4_direct")
DEFAULT_SHARES = "pre_x2=0.25,meta_x2_direct=0.40,meta_x2_bicubic=0.08,pre_x4=0.07,meta_x4_direct=0.20"
OUT_NAMES = {"pre_x2": "pretrain_x2_bicubic", "meta_x2_direct": "mzsr_x2_direct",
             "meta_x2_bicubic": "mzsr_x2_bicubic", "pre_x4": "pretrain_x4_bicubic", "meta_x4_direct": "mzsr_x4_direct"}


def _default_val():
    for cand in (os.environ.get("MZSR_FAST_DATA", "") and Path(os.environ["MZSR_FAST_DATA"]) / "set5",
                 Path(__file__).resolve().parents[3] / "shared" / "data" / "set5",
                 Path(__file__).resolve().parents[2] / ".device_carry" / "set5"):
        if cand and Path(cand).is_dir():
            return str(cand)
    return ""


def _default_data():
    for cand in (Path(__file__).resolve().parents[2] / ".device_carry" / "train",
                 Path(__file__).resolve().parents[3] / "shared" / "data" / "train"):
        if cand.is_dir():
            return str(cand)
    return ""


def _shares(s: str) -> dict:
    out = {k: 0.0 for k in STAGES}
    for part in s.split(","):
        if part.strip():
            k, v = part.split("=")
            if k.strip() not in out:
                raise SystemExit(f"--shares: unknown stage {k!r}; stages {STAGES}")
            out[k.strip()] = float(v)
    tot = sum(out.values())
    if tot <= 0:
        raise SystemExit("--shares: all zero")
    return {k: v / tot for k, v in out.items()}


def recipe(a) -> dict:
    from . import meta, pretrain
    from .validate import load_valset, validate

    t_start = time.perf_counter()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available (use --device cpu for a dry run)")
    if a.threads:
        torch.set_num_threads(a.threads)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
    shares = _shares(a.shares)
    if a.reserve is None:
        a.reserve = min(10.0, 0.05 * a.time_budget)
    summary = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
               "time_budget": a.time_budget, "shares": shares, "stages": {}}

    def elapsed():
        return time.perf_counter() - t_start

    def write_summary():
        summary["elapsed_s"] = round(elapsed(), 1)
        tmp = out / ".summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=1))
        tmp.replace(out / "summary.json")

    images = load_folder(a.data, min_side=a.bank_patch, max_images=a.max_images)
    sampler = BankSampler(images, bank_patch=a.bank_patch, per_mpix=a.per_mpix, device=dev, seed=a.seed)
    del images
    summary["data"] = {"dir": str(a.data), "bank_patches": len(sampler), "load_s": round(elapsed(), 1)}
    print(f"[gpu-recipe] bank of {len(sampler)} patches of {a.bank_patch}^2 on {dev} in {elapsed():.1f} s", flush=True)
    vsets = {}
    if a.val_data:
        for setting, scale in (("g20", 2), ("b13", 2), ("g20", 4)):
            vsets[(setting, scale)] = load_valset(a.val_data, setting, scale, a.val_limit)

    init = a.init or str(model.WEIGHTS_DIR / "pretrain_x2_bicubic.safetensors")
    stage_init = {}
    for kv in a.init_stage:
        k, v = kv.split("=", 1)
        if k not in STAGES or not Path(v).is_file():
            raise SystemExit(f"--init-stage {kv!r}: stage must be one of {STAGES} and the file must exist")
        stage_init[k] = v
    results = {"pre_x2": init if Path(init).is_file() else None}
    budget_total = a.time_budget - a.reserve - elapsed()
    flags = (["--device", str(dev), "--no-bar", "--threads", str(a.threads or 0), "--val-every", "0",
              "--ckpt-every", "1000000", "--ckpt-every-s", str(a.ckpt_every_s), "--log-every", "20",
              "--plot-every", "0", "--data", str(a.data), "--seed", str(a.seed)]
             + (["--tf32"] if a.tf32 else []) + (["--channels-last"] if a.channels_last else []))

    plan = [s for s in STAGES if shares[s] > 0]
    for si, stage in enumerate(plan):
        left = a.time_budget - a.reserve - elapsed()
        # this stage's share of what is left, so early stages that end early give time back
        rest = sum(shares[s] for s in plan[si:])
        budget = left * shares[stage] / rest
        from .common import stop_requested

        if stop_requested():
            summary["stages"][stage] = {"skipped": "stopped by a signal"}
            continue
        if budget < 1:
            summary["stages"][stage] = {"skipped": f"{max(budget, 0):.1f} s of budget for it"}
            continue
        sdir = out / stage
        try:  # one failing stage (e.g. an op missing on this torch) must not lose the others
            if stage in ("pre_x2", "pre_x4"):
                scale = 2 if stage == "pre_x2" else 4
                src = results.get("pre_x2") if stage == "pre_x4" else init
                src = stage_init.get(stage, src)
                argv = flags + ["--out", str(sdir), "--scale", str(scale), "--patch", str(a.pre_patch), "--batch",
                                str(a.pre_batch), "--lr", str(a.pre_lr), "--lr-min", str(a.pre_lr_min),
                                "--lr-halve-every", "1000000000", "--steps", "100000000", "--time-budget", f"{budget:.1f}",
                                "--lr-by-time"]
                if src and Path(src).is_file():
                    argv += ["--init", str(src)]
                args = pretrain.add_args(argparse.ArgumentParser()).parse_args(argv)
                res = pretrain.run(args, sampler=sampler)
                sub, val_key = "bicubic", ("g20", scale)
            else:
                scale = 4 if "x4" in stage else 2
                sub = "bicubic" if "bicubic" in stage else "direct"
                src = (results.get("pre_x4") or results.get("pre_x2")) if scale == 4 else results.get("pre_x2")
                src = stage_init.get(stage, src)  # --init-stage: e.g. continue from a shipped meta file
                fo_frac = a.fo_frac
                argv = flags + ["--out", str(sdir), "--scale", str(scale), "--subsampling", sub,
                                "--patch", str(a.meta_patch), "--meta-batch", str(a.meta_batch),
                                "--inner-steps", str(a.inner_steps), "--inner-data", a.inner_data,
                                "--task-images", a.task_images,
                                "--alpha", str(a.alpha), "--beta", str(a.beta),
                                "--anneal-iters", str(a.anneal_iters), "--steps", "100000000",
                                "--time-budget", f"{budget:.1f}", "--first-order-time", f"{budget * fo_frac:.1f}"]
                if src and Path(src).is_file():
                    argv += ["--init", str(src)]
                if a.meta_val_every > 0 and a.val_data:
                    argv += ["--val-every", str(a.meta_val_every), "--val-data", str(a.val_data),
                             "--best-metric", a.best_metric, "--keep-val-snapshots"]
                args = meta.add_args(argparse.ArgumentParser()).parse_args(argv)
                res = meta.run(args, sampler=sampler)
                if res["best"] and (sdir / "best.safetensors").is_file():
                    # the stage's validated best (its step is in the record) instead of the last weights
                    res = {**res, "params": model.load_weights(sdir / "best.safetensors", device=dev)[0],
                           "step": res["best"]["step"]}
                val_key = ("b13" if sub == "bicubic" else "g20", scale)
            name = OUT_NAMES[stage]
            dst = out / f"{name}.safetensors"
            meta_d = {"stage": stage, "scale": scale, "subsampling": sub, "steps": res["step"],
                      "train_time_s": round(budget, 1), "machine": summary["device"], "recipe": "mzsr_fast.train.gpu",
                      "init": str(src)}
            rec = {"steps": res["step"], "budget_s": round(budget, 1), "ended_at_s": round(elapsed(), 1)}
            model.save_weights(dst, res["params"], meta_d)  # first, so a failing validation loses nothing
            results[stage] = str(dst)
            if val_key in vsets:
                try:
                    v = validate(res["params"], vsets[val_key], (0, 1, 10), device=dev)
                    rec["val"] = {"setting": val_key[0], "scale": val_key[1], **{k: round(x, 3) for k, x in v.items()}}
                    meta_d.update({f"set5_{val_key[0]}_x{val_key[1]}_{k}": round(x, 3)
                                   for k, x in v.items() if k != "val_time"})
                    print(f"[gpu-recipe] {stage}: {res['step']} steps, Set5 {val_key}: {v}", flush=True)
                    model.save_weights(dst, res["params"], meta_d)
                except Exception as e:  # noqa: BLE001
                    rec["val_error"] = f"{type(e).__name__}: {e}"
            else:
                print(f"[gpu-recipe] {stage}: {res['step']} steps (no validation data)", flush=True)
            results[stage] = str(dst)
            summary["stages"][stage] = rec
        except Exception as e:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            summary["stages"][stage] = {"error": f"{type(e).__name__}: {e}"}
        write_summary()
    write_summary()
    return summary


def pack(src, dst, max_mb: float = 45.0, order=("t91", "general100_partial", "bsd200"), fmt: str = "copy") -> dict:
    """Copy the images of ``src`` (recursively) to ``dst``, sub-folders in ``order`` first,
    stopping before ``max_mb`` megabytes (the device carry limit is 64 MiB in all).
    ``fmt="copy"``: the files unchanged (instant); ``fmt="webp"``: lossless WebP (about 30 %
    smaller, pixels unchanged and checked, but slow to encode: ~0.5 s per image)."""
    import shutil

    from PIL import Image

    src, dst = Path(src), Path(dst)
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    rank = {name: i for i, name in enumerate(order)}
    files.sort(key=lambda p: (rank.get(p.relative_to(src).parts[0], len(order)), str(p)))
    total, n = 0, 0
    for p in files:
        rel = p.relative_to(src)
        if fmt == "webp":
            q = dst / rel.with_suffix(".webp")
            q.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(p) as im:
                rgb = im.convert("RGB")
                rgb.save(q, "WEBP", lossless=True, quality=100, method=4)
            with Image.open(q) as chk:  # lossless check
                if not np.array_equal(np.asarray(chk.convert("RGB")), np.asarray(rgb)):
                    raise RuntimeError(f"WebP round trip changed pixels of {p}")
        else:
            q = dst / rel
            q.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, q)
        size = q.stat().st_size
        if total + size > max_mb * 1e6:
            q.unlink()
            break
        total += size
        n += 1
    return {"files": n, "of": len(files), "mb": round(total / 1e6, 2)}


def _alpha_text(s: str) -> str:
    """``--alpha`` of the recipe: checked as meta-train checks it (so a bad value fails before
    the first stage, not after it), passed on to meta-train as the same text."""
    from .meta import parse_alpha

    parse_alpha(s)
    return s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mzsr_fast.train.gpu", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recipe", help="budgeted pretraining + meta-training on one device")
    r.add_argument("--out", required=True)
    r.add_argument("--time-budget", type=float, default=200.0, help="total wall-clock seconds [%(default)s]")
    r.add_argument("--reserve", type=float, default=None,
                   help="seconds kept for the last validation/export [min(10, 5%% of the budget)]")
    r.add_argument("--max-images", type=int, default=None, help="use only the first N images (dry runs)")
    r.add_argument("--data", default=_default_data())
    r.add_argument("--val-data", default=_default_val(), help="Set5 HR folder ('' = no validation) [%(default)s]")
    r.add_argument("--val-limit", type=int, default=None)
    r.add_argument("--init", default=None, help="x2 start weights [shipped pretrain_x2_bicubic]")
    r.add_argument("--init-stage", action="append", default=[], metavar="STAGE=PATH",
                   help="start STAGE from PATH instead of the previous stage's output, e.g. "
                        "meta_x4_direct=mzsr_fast/weights/mzsr_x4_direct.safetensors (continue a shipped file)")
    r.add_argument("--device", default="cuda")
    r.add_argument("--threads", type=int, default=0)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--shares", default=DEFAULT_SHARES, help="budget fraction per stage [%(default)s]")
    r.add_argument("--ckpt-every-s", type=float, default=60.0)
    r.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True)
    r.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    r.add_argument("--bank-patch", type=int, default=112, help="side of the bank crops; batches are random crops of them")
    r.add_argument("--per-mpix", type=float, default=600.0,
                   help="bank crops per megapixel of training data (~30k crops, 1.1 GB uint8 for the 340 images)")
    r.add_argument("--pre-patch", type=int, default=96)
    r.add_argument("--pre-batch", type=int, default=32)
    r.add_argument("--pre-lr", type=float, default=4e-4)
    r.add_argument("--pre-lr-min", type=float, default=1e-4)
    r.add_argument("--meta-patch", type=int, default=64)
    r.add_argument("--meta-batch", type=int, default=5)
    r.add_argument("--inner-steps", type=int, default=5)
    r.add_argument("--inner-data", choices=["hr", "son"], default="hr", help="meta task splits (train README)")
    r.add_argument("--task-images", choices=["mixed", "one"], default="mixed", help="meta task sources (train README)")
    r.add_argument("--alpha", default="0.01", type=_alpha_text, help="inner rate, or one per inner step (0.02,0.01)")
    r.add_argument("--beta", type=float, default=1e-4)
    r.add_argument("--anneal-iters", type=int, default=500)
    r.add_argument("--fo-frac", type=float, default=0.5, help="fraction of each meta stage run first-order")
    r.add_argument("--meta-val-every", type=int, default=0,
                   help="validate each meta stage every N iterations on --val-data and keep its best by "
                        "--best-metric (the stage's file is then the best, not the last) (0 = off) [%(default)s]")
    r.add_argument("--best-metric", default="psnr_1+psnr_10", help="with --meta-val-every [%(default)s]")
    k = sub.add_parser("pack", help="copy a training folder under a size limit (for the device carry)")
    k.add_argument("src")
    k.add_argument("dst")
    k.add_argument("--max-mb", type=float, default=45.0)
    k.add_argument("--format", choices=["copy", "webp"], default="copy")
    a = p.parse_args(argv)
    if a.cmd == "pack":
        print(json.dumps(pack(a.src, a.dst, a.max_mb, fmt=a.format)))
        return 0
    if not a.data:
        raise SystemExit("no training data: pass --data DIR (e.g. .device_carry/train)")
    from .common import install_stop_handler

    install_stop_handler()  # SIGTERM: finish the stage's current step, save its outputs, skip the rest
    s = recipe(a)
    print(json.dumps(s, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
