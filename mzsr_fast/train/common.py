"""Helpers shared by pretraining and meta-training: device/thread set-up, the argument
groups both share, the run folder layout, exporting weights, divergence handling."""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import time
from pathlib import Path

import torch

from .. import model

__all__ = ["TrainingDiverged", "add_common_args", "setup_torch", "autocast", "export_weights", "machine_desc", "Timer"]

DEFAULT_DATA = os.environ.get("MZSR_FAST_TRAIN_DATA", str(Path(__file__).resolve().parents[3] / "shared" / "data" / "train"))
DEFAULT_VAL = os.environ.get("MZSR_FAST_VAL_DATA", str(Path(__file__).resolve().parents[3] / "shared" / "data" / "set5"))


_STOP = {"flag": False, "installed": False}


def install_stop_handler() -> None:
    """SIGTERM/SIGINT -> finish the current step, checkpoint, stop (``stop_requested()``).
    A second signal is not caught: it kills as usual.  Main thread only (signal rules)."""
    import signal
    import threading

    if _STOP["installed"] or threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        _STOP["flag"] = True
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    _STOP["installed"] = True


def stop_requested() -> bool:
    return _STOP["flag"]


class TrainingDiverged(RuntimeError):
    """A non-finite loss or gradient: training stops, the last good checkpoint is kept."""


def add_common_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--data", default=DEFAULT_DATA, help="folder of HR training images (recursive) [%(default)s]")
    g.add_argument("--out", required=True, help="run folder: ckpt.pt, log.jsonl, plot.png, best/last .safetensors")
    g.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt exactly (weights, optimizer, step, RNG)")
    g.add_argument("--init", default=None, help="start from these safetensors weights (ignored with --resume)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N [%(default)s]")
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch default) [%(default)s]")
    g.add_argument("--time-budget", type=float, default=0.0,
                   help="stop (with a checkpoint) after this many wall-clock seconds of this process; 0 = none")
    g.add_argument("--ckpt-every", type=int, default=200, help="checkpoint every N steps [%(default)s]")
    g.add_argument("--ckpt-every-s", type=float, default=300.0, help="... and at least every N seconds [%(default)s]")
    g.add_argument("--log-every", type=int, default=10, help="JSONL train record every N steps [%(default)s]")
    g.add_argument("--plot-every", type=int, default=500, help="redraw plot.png every N steps (0 = no plot) [%(default)s]")
    g.add_argument("--no-bar", action="store_true", help="no tqdm progress bar")
    g.add_argument("--channels-last", action="store_true", help="channels_last tensors (faster on GPU)")
    g.add_argument("--amp", choices=["none", "bf16"], default="none", help="autocast dtype for forward/backward")
    g.add_argument("--tf32", action="store_true", help="allow TF32 matmul/conv on CUDA")
    g.add_argument("--flat-threshold", type=float, default=8.0,
                   help="reject HR patches whose luma std (0..255) is below this [%(default)s]")
    v = p.add_argument_group("validation")
    v.add_argument("--val-data", default=DEFAULT_VAL, help="HR folder for validation [%(default)s]")
    v.add_argument("--val-setting", default=None, help="g20 | g02 | gani | b13 (default: g20, b13 for bicubic)")
    v.add_argument("--val-suite", default=None,
                   help="validate on several sets and settings instead of --val-data/--val-setting: "
                        "'set5:g02,set5:g20,set14:gani,...' (a set is a folder, or a name under the data root "
                        "of --val-data); the psnr_n keys are then the means over every cell (issue 15's rule)")
    v.add_argument("--val-every", type=int, default=500, help="validate every N steps (0 = never) [%(default)s]")
    v.add_argument("--val-steps", default="1,10", help="adaptation steps to validate [%(default)s]")
    v.add_argument("--val-limit", type=int, default=None, help="use only the first N validation images")
    v.add_argument("--best-metric", default="psnr_10",
                   help="validation key that selects best.safetensors; 'a+b' selects by the sum [%(default)s]")
    v.add_argument("--val-backend", default="reference",
                   help="adaptation backend of the validation (reference, cpu, triton, cuda) [%(default)s]")
    v.add_argument("--keep-val-snapshots", action="store_true",
                   help="also export OUT/val_step{N}.safetensors at every validation")


def setup_torch(args) -> torch.device:
    if args.threads and args.threads > 0:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: CUDA is not available")
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = bool(args.tf32)
        torch.backends.cudnn.allow_tf32 = bool(args.tf32)
    return dev


def autocast(args, dev: torch.device):
    if args.amp == "bf16":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fmt(x: torch.Tensor, args) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if args.channels_last else x


def supervised_l1_step(params, opt: torch.optim.Optimizer, x: torch.Tensor, hr: torch.Tensor,
                       bf16: bool = True) -> torch.Tensor:
    """One plain supervised step: L1 of ``model.forward(params, x)`` against ``hr`` (both
    ``(N, 3, P, P) float32``, made channels_last here), optionally under bf16 autocast (the loss
    in fp32); returns the loss.  The bank entries' trainer (``runs/bank_2026-12-05/entry.py``) and
    the supervised specialist/generalist (``runs/knowledge_2026-12-05/specialist.py``)."""
    x = x.contiguous(memory_format=torch.channels_last)
    hr = hr.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        y = model.forward(params, x)
    loss = (y.float() - hr).abs().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def check_finite(loss: torch.Tensor, step: int, what: str, ckpt: Path) -> float:
    v = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    if not math.isfinite(v):
        raise TrainingDiverged(
            f"{what} is {v} at step {step}: training stopped; the last good checkpoint is kept at {ckpt} "
            f"(lower the learning rate, or resume from it with --resume)"
        )
    return v


def machine_desc(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (torch {torch.__version__})"
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} thread(s) (torch {torch.__version__})"


def export_weights(path, params, **meta) -> None:
    model.save_weights(path, {k: v.detach() for k, v in params.items()}, meta)


class Timer:
    """Wall-clock seconds of training, accumulated across resumes (``offset``)."""

    def __init__(self, offset: float = 0.0):
        self.t0 = time.perf_counter()
        self.offset = float(offset)

    def session(self) -> float:
        return time.perf_counter() - self.t0

    def total(self) -> float:
        return self.offset + self.session()


def run_entry(run, args, *, err_prefix: str, done: str) -> int:
    """The shared entry of the training commands (``python -m ...`` and the CLI): install the
    stop handler, ``run(args)``, exit 3 with ``err_prefix + "error: ..."`` on a NaN/inf loss
    (the last good checkpoint is kept), print ``done.format(step=..., best=...)`` on the main
    rank, and shut torch.distributed down."""
    import sys

    from . import dist

    install_stop_handler()
    try:
        res = run(args)
    except TrainingDiverged as e:
        print(f"{err_prefix}error: {e}", file=sys.stderr)
        return 3
    if res["info"].main:
        print(done.format(step=res["step"], best=res["best"]))
    dist.finish(res["info"])
    return 0
