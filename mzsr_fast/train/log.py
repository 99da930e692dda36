"""Training logs: a JSONL file (one JSON object per line), a tqdm progress bar, and a PNG
plot of the loss and the validation PSNR drawn from the JSONL file.

Records: ``{"kind": "train", "step", "loss", "lr", "it_s", "time"}``,
``{"kind": "val", "step", "psnr_1", "psnr_10", "bicubic", ...}``, ``{"kind": "event", ...}``.
``time`` is the wall-clock training time in seconds, accumulated across resumes.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

__all__ = ["JsonlLogger", "read_log", "plot_log", "make_bar"]


class JsonlLogger:
    def __init__(self, path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", buffering=1)

    def log(self, **rec) -> None:
        if not self.enabled:
            return
        rec.setdefault("wall", time.time())
        self._f.write(json.dumps(rec, default=float) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self.enabled:
            self._f.close()


def read_log(path) -> list[dict]:
    """All records of a JSONL log; a torn last line (killed writer) is skipped."""
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def plot_log(log_path, png_path=None, *, smooth: int = 50) -> Path:
    """Plot the training loss (raw and moving average) and the validation PSNR curves of
    a JSONL log into a PNG (default: next to the log, ``plot.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = read_log(log_path)
    png = Path(png_path) if png_path else Path(log_path).with_name("plot.png")
    # keep the last record per step (a resumed run repeats the steps after its checkpoint)
    train = {r["step"]: r for r in recs if r.get("kind") == "train" and math.isfinite(r.get("loss", float("nan")))}
    val = {r["step"]: r for r in recs if r.get("kind") == "val"}
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        steps = sorted(train)
        loss = [train[s]["loss"] for s in steps]
        a1.plot(steps, loss, lw=0.5, alpha=0.4, label="loss")
        if len(loss) > smooth:
            avg = [sum(loss[i - smooth : i]) / smooth for i in range(smooth, len(loss) + 1)]
            a1.plot(steps[smooth - 1 :], avg, lw=1.5, label=f"mean of {smooth}")
        a1.set_yscale("log")
    a1.set_xlabel("step")
    a1.set_ylabel("L1 loss")
    if train:
        a1.legend()
    a1.grid(alpha=0.3)
    if val:
        steps = sorted(val)
        keys = sorted({k for r in val.values() for k in r if k.startswith("psnr_") or k == "bicubic"})
        for k in keys:
            a2.plot(steps, [val[s].get(k, float("nan")) for s in steps], marker="o", ms=3, label=k)
    a2.set_xlabel("step")
    a2.set_ylabel("Y-PSNR (dB)")
    a2.set_title("validation")
    if val:
        a2.legend()
    a2.grid(alpha=0.3)
    fig.tight_layout()
    tmp = png.with_name(f".{png.name}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png)
    return png


def make_bar(total: int, initial: int, desc: str, enabled: bool = True, progress=None):
    """A tqdm bar over training steps (it/s and ETA are tqdm's own; the loss goes in the
    postfix), following :mod:`mzsr_fast.progress`: ``progress=None`` shows it only when
    stderr is a terminal (a job writing to a log file prints no bar lines), ``False`` never,
    ``True`` always, a ``callback(done, total, desc)`` is called instead (``done`` counts
    from ``initial``).  ``enabled=False`` (ranks other than 0) is always a no-op.  Without
    tqdm (bare GPU machines) a silent stand-in."""
    from ..progress import _is_tty, check_progress

    check_progress(progress)
    if not enabled or progress is False:
        return _NoBar()
    if callable(progress) and not isinstance(progress, bool):
        return _CallbackBar(progress, total, initial, desc)
    if progress is None and not _is_tty(sys.stderr):
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True,
                mininterval=2.0, file=sys.stderr, smoothing=0.05)


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, *a, **kw):
        pass

    def set_postfix_str(self, s=""):
        pass

    def write(self, s):
        print(s, file=sys.stderr, flush=True)

    def close(self):
        pass


class _CallbackBar(_NoBar):
    def __init__(self, fn, total: int, initial: int, desc: str):
        self.fn, self.total, self.n, self.desc = fn, int(total), int(initial), desc
        fn(self.n, self.total, desc)

    def update(self, n=1):
        self.n += int(n)
        self.fn(self.n, self.total, self.desc)
