"""The options of one ``adapt_and_upscale`` call, validated once (:class:`Options`), and what
they resolve to: the device, the weights (cached per file and device), the learning-rate
schedule, the backend instance (one per thread) and the memory budget.

The CLI and the API share :class:`Options`: building one raises the same ``ValueError``
for a bad option as the call would, before any image is read.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from . import backends as _backends
from . import bank as _bank
from . import model as _model
from .progress import check_progress

__all__ = ["Options", "ADAPT_ON", "QUALITY_PRESETS", "BP_ROUNDS", "default_lr_schedule", "resolve_device", "parse_memory", "default_budget", "load_params", "schedule",
           "backend_instance"]

ADAPT_ON = ("full", "crops")

#: back-projection rounds of ``back_projection=True`` and of the presets: 20 rounds beat 10
#: (and 40) on training images in all three direct settings (runs/test_time_2026-12-04)
BP_ROUNDS = 20

#: ``quality=`` presets: (steps, ensemble, back-projection rounds).  Chosen on training
#: images only (runs/test_time_2026-12-04/README.md: back-projection +0.2..+1.1 dB, the
#: ensemble +0.02..+0.13 dB more, 25 steps or augmented adaptation nothing over 10 steps);
#: measured on Set5/Set14 in docs/results.md.
QUALITY_PRESETS = {
    "fast": {"steps": 1, "ensemble": False, "back_projection": BP_ROUNDS},
    "balanced": {"steps": 10, "ensemble": False, "back_projection": BP_ROUNDS},
    "best": {"steps": 10, "ensemble": True, "back_projection": BP_ROUNDS},
}


def default_lr_schedule(steps: int) -> list[float]:
    """Per-step learning rates of the official Directx2 model (SPEC section 3):
    step 0: 2e-2, steps 1-3: 1e-2, then 5e-3."""
    return [2e-2 if i == 0 else 1e-2 if i <= 3 else 5e-3 for i in range(steps)]


def resolve_device(device) -> torch.device:
    """None -> cuda if available else cpu; a string/device is validated (ValueError)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"invalid device {device!r}: {e}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r} (cpu or cuda)")
    return dev


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory(value) -> int:
    """``max_memory`` -> bytes.  An int (bytes) or a string such as ``"4GiB"``, ``"512 MiB"``,
    ``"1.5GB"`` (KiB/MiB/GiB/TiB are powers of 1024, kB/MB/GB/TB of 1000; case-insensitive).
    Raises TypeError for other types and ValueError for unknown units or values <= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"max_memory must be None, an int (bytes) or a string like '4GiB', got {type(value).__name__}")
    if isinstance(value, int):
        n = value
    else:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*", value)
        if not m:
            raise ValueError(f"max_memory {value!r} is not a number with an optional unit (e.g. '4GiB', '512MB')")
        unit = m.group(2).lower()
        if unit not in _UNITS:
            raise ValueError(f"max_memory {value!r}: unknown unit {m.group(2)!r} "
                             "(use B, kB, MB, GB, TB or KiB, MiB, GiB, TiB)")
        n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise ValueError(f"max_memory must be > 0 bytes, got {value!r}")
    return n


def default_budget(device: torch.device) -> tuple[int, str]:
    """(bytes, where from): half of the free memory of ``device`` -- ``MemAvailable`` of
    /proc/meminfo on the CPU, ``torch.cuda.mem_get_info`` on CUDA.  Half, because other
    processes and the caller's own data share it; 4 GiB where neither can be read."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free // 2, "half of free CUDA memory (torch.cuda.mem_get_info)"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2, "half of MemAvailable (/proc/meminfo)"
    except (OSError, ValueError, IndexError):
        pass
    return 4 * 2**30, "4 GiB (free memory unknown)"


def _positive_int(name: str, v) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    return v


@dataclasses.dataclass
class Options:
    """Every option of :func:`mzsr_fast.adapt_and_upscale` but the image, kernel and weights
    (see its docstring), checked in ``__post_init__``; ``device`` is resolved to a
    ``torch.device`` and ``budget`` / ``budget_source`` are the bytes of ``max_memory``."""

    scale: int = 2
    steps: int | None = None
    subsampling: str = "direct"
    backend: str = "auto"
    device: object = None
    lr_schedule: Sequence[float] | float | Callable[[int], float] | None = None
    precision: str = "fp32"
    max_memory: int | str | None = None
    adapt_on: str = "full"
    crop_size: int = 128
    n_crops: int = 16
    crop_seed: int = 0
    lr_search: bool = False
    progress: object = None
    ensemble: bool | None = None
    back_projection: int | bool | None = None
    quality: str | None = None
    budget: int = dataclasses.field(init=False, default=0)
    budget_source: str = dataclasses.field(init=False, default="")

    def __post_init__(self):
        # a preset fills what the caller left at None; an explicit value wins
        if self.quality is not None and self.quality not in QUALITY_PRESETS:
            raise ValueError(f"quality must be None or one of {sorted(QUALITY_PRESETS)}, got {self.quality!r}")
        preset = QUALITY_PRESETS.get(self.quality, {"steps": 10, "ensemble": False, "back_projection": 0})
        for name, v in preset.items():
            if getattr(self, name) is None:
                setattr(self, name, v)
        if not isinstance(self.ensemble, bool):
            raise ValueError(f"ensemble must be True or False, got {self.ensemble!r}")
        bp = self.back_projection
        if isinstance(bp, bool):
            bp = BP_ROUNDS if bp else 0
        if not isinstance(bp, int) or bp < 0:
            raise ValueError(f"back_projection must be True/False or a number of rounds >= 0, got {bp!r}")
        self.back_projection = bp
        s = self.scale
        if not isinstance(s, int) or isinstance(s, bool) or s < 2:
            raise ValueError(f"scale must be an int >= 2, got {s!r}")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {self.steps!r}")
        if self.subsampling not in ("direct", "bicubic"):
            raise ValueError(f"subsampling must be 'direct' or 'bicubic', got {self.subsampling!r}")
        if not isinstance(self.backend, str) or self.backend not in _backends.NAMES:
            raise ValueError(f"unknown backend {self.backend!r}; choose one of {_backends.NAMES}")
        if self.precision not in _backends.PRECISIONS:
            raise ValueError(f"precision must be one of {_backends.PRECISIONS}, got {self.precision!r}")
        if self.adapt_on not in ADAPT_ON:
            raise ValueError(f"adapt_on must be one of {ADAPT_ON}, got {self.adapt_on!r}")
        _positive_int("crop_size", self.crop_size)
        _positive_int("n_crops", self.n_crops)
        if not isinstance(self.crop_seed, int) or isinstance(self.crop_seed, bool):
            raise ValueError(f"crop_seed must be an int, got {self.crop_seed!r}")
        if not isinstance(self.lr_search, bool):
            raise ValueError(f"lr_search must be True or False, got {self.lr_search!r}")
        check_progress(self.progress)
        self.device = resolve_device(self.device)
        if self.max_memory is None:
            self.budget, self.budget_source = default_budget(self.device)
        else:
            self.budget, self.budget_source = parse_memory(self.max_memory), f"max_memory={self.max_memory!r}"

    def check_image(self, h: int, w: int, kernel) -> None:
        """ValueError for an ``h x w`` LR image too small for the scale or the kernel."""
        if min(h, w) < self.scale:
            raise ValueError(f"image of {h}x{w} pixels is too small for scale {self.scale} "
                             f"(needs at least {self.scale}x{self.scale})")
        if kernel is not None and (kernel.shape[0] > h or kernel.shape[1] > w):
            raise ValueError(f"kernel of shape {kernel.shape} is larger than the {h}x{w} image")


# ----------------------------------------------------------------------------- weights
@functools.lru_cache(maxsize=8)
def _load_cached(path: str):
    """``(params, metadata)`` of a weights file, or a :class:`mzsr_fast.bank.Bank` for a bank."""
    tensors, meta = _model.read_safetensors(path)
    if _bank.is_bank(meta):
        return _bank.bank_from_tensors(tensors, meta, path)
    return _model.checked_weights(tensors, meta, path)


def _file_params(path: str, kernel) -> tuple[dict[str, torch.Tensor], str]:
    got = _load_cached(path)
    if isinstance(got, _bank.Bank):
        entry = got.select(kernel)
        return entry.params, f"{path}#{entry.name}"
    return got[0], path


def load_params(weights, scale: int, subsampling: str, kernel=None) -> tuple[dict[str, torch.Tensor], str]:
    """weights: None (shipped default), a path, or a params dict -> (CPU params, description).

    A bank file (:mod:`mzsr_fast.bank`) gives the entry that ``kernel`` (``(kh, kw)`` float64
    or None) selects; its description is ``"PATH#ENTRY"``."""
    if weights is None:
        path = _model.default_weights_path(scale, subsampling)
        return _file_params(str(path), kernel)
    if isinstance(weights, Mapping):
        # keys, shapes, dtype, NaN/inf named (one device->host read); never modifies the dict
        return _model.check_params(weights, "weights dict"), "<params dict>"
    if isinstance(weights, (str, Path)):
        return _file_params(str(Path(weights).resolve()), kernel)
    raise TypeError(f"weights must be None, a path or a dict of tensors, got {type(weights).__name__}")


def _file_and_entry(wdesc: str):
    """wdesc -> (metadata of the file, the bank entry or None)."""
    path, _, name = wdesc.partition("#")
    got = _load_cached(path)
    if isinstance(got, _bank.Bank):
        return got.metadata, next(e for e in got.entries if e.name == name)
    return got[1], None


def warn_unadapted_meta(wdesc: str, steps: int) -> None:
    """steps=0 with a meta-learned weights file (metadata ``stage`` meta*): such a start is
    trained to be good after adaptation, not before, and can be below bicubic unadapted
    (the shipped ``mzsr_x2_direct``: 20.8 dB against bicubic 28.7 on Set5 g^d_2.0).
    A bank entry carries its own ``stage`` (bank metadata ``bank``)."""
    if steps != 0 or wdesc == "<params dict>":
        return
    meta, entry = _file_and_entry(wdesc)
    stage = entry.stage if entry is not None else str(meta.get("stage", ""))
    if stage.startswith("meta"):
        warnings.warn(f"steps=0 with the meta-learned weights {Path(wdesc).name}: this start is meant to be "
                      "adapted (steps >= 1) and can be worse than bicubic without it; for a plain forward pass use "
                      "the pretrained weights (weights=mzsr_fast.model.WEIGHTS_DIR / 'pretrain_x2_bicubic.safetensors')",
                      UserWarning, stacklevel=3)


_dev_params_lock = threading.Lock()
_dev_params: dict = {}


def params_on(params: dict[str, torch.Tensor], key: str, device: torch.device) -> dict[str, torch.Tensor]:
    """Shipped/file weights kept once per device (read-only: backends copy them in
    prepare), so a call does no host-to-device weight copies."""
    if device.type == "cpu" or key == "<params dict>":
        return params
    k = (key, str(device))
    with _dev_params_lock:
        if k not in _dev_params:
            if len(_dev_params) >= 8:
                _dev_params.clear()
            _dev_params[k] = {n: v.to(device) for n, v in params.items()}
        return _dev_params[k]


# ----------------------------------------------------------------------------- schedule
def schedule(lr_schedule, steps: int, recommended: Sequence[float] | None = None) -> list[float]:
    """The per-step learning rates of a call.  ``None`` -> the weights file's recommended
    schedule (metadata ``lr_schedule``, its last value repeated) if it has one, else
    :func:`default_lr_schedule`."""
    if lr_schedule is None and recommended:
        rec = [float(v) for v in recommended]
        sched = (rec + [rec[-1]] * max(0, steps - len(rec)))[:steps]
    elif lr_schedule is None:
        sched = default_lr_schedule(steps)
    elif callable(lr_schedule):
        sched = [float(lr_schedule(i)) for i in range(steps)]
    elif isinstance(lr_schedule, (int, float)):
        sched = [float(lr_schedule)] * steps
    else:
        sched = [float(v) for v in lr_schedule]
        if len(sched) < steps:
            raise ValueError(f"lr_schedule has {len(sched)} entries but steps={steps}")
        sched = sched[:steps]
    for v in sched:
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"learning rates must be finite and >= 0, got {v}")
    return sched


def recommended_schedule(wdesc: str) -> list[float] | None:
    """The adaptation schedule recorded in a weights file (None for a params dict or a
    file without one); see :func:`mzsr_fast.model.schedule_from_metadata`."""
    if wdesc == "<params dict>":
        return None
    meta, entry = _file_and_entry(wdesc)
    if entry is not None and entry.lr_schedule is not None:
        return entry.lr_schedule
    return _model.schedule_from_metadata(meta, f"weights file {wdesc}")


# ----------------------------------------------------------------------------- backend
_tls = threading.local()


def backend_instance(name: str, device: torch.device, precision: str):
    """A backend instance per (thread, name, device, precision, the backend's environment
    switches): instances keep buffers and captured graphs across calls, and threads never
    share one; changing a switch such as ``MZSR_FAST_CUDA_VARIANT`` gives a new instance."""
    cache = getattr(_tls, "backends", None)
    if cache is None:
        cache = _tls.backends = {}
    env = tuple(os.environ.get(v) for v in _backends.env_switches(name))
    key = (name, str(device), precision, env)
    if key not in cache:
        cache[key] = _backends.get(name, device, precision)
    return cache[key]
