"""Backend registry: ``get(name, device, precision)`` and ``available(device)``.

Backends are imported lazily so that a broken optional dependency (triton, the compiled
extension) never breaks ``import mzsr_fast``; ``available`` reports why a backend is not
usable instead.
"""
from __future__ import annotations

import importlib

import torch

from .base import PRECISIONS, Backend

__all__ = ["Backend", "PRECISIONS", "NAMES", "get", "available", "resolve"]

#: name -> "module:Class"
_REGISTRY = {
    "reference": "mzsr_fast.backends.reference:ReferenceBackend",
    "cpu": "mzsr_fast.backends.cpu:CpuBackend",
    "triton": "mzsr_fast.backends.triton:TritonBackend",
    "cuda": "mzsr_fast.backends.cuda:CudaBackend",
}
NAMES = tuple(_REGISTRY) + ("auto",)
#: auto picks the first available, per (device type, precision).  The CUDA orders are the
#: whole call's, fastest first: rows quality/mzsr10_g^d_2.0/latency (Set5 baby, 256^2 LR)
#: of benchmarks/results/h100.csv.
_AUTO = {
    ("cuda", "fp32"): ("reference", "cuda", "triton"),
    ("cuda", "tf32"): ("triton", "reference", "cuda"),
    ("cuda", "bf16"): ("triton", "cuda", "reference"),
    ("cpu", None): ("cpu", "reference"),
}


def _load(name: str) -> type[Backend]:
    mod, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def _check(name: str, device: torch.device) -> tuple[bool, str]:
    try:
        return _load(name).available(device)
    except ImportError as e:
        return False, f"import failed: {e}"
    except Exception as e:  # a broken optional backend must not break the others
        return False, f"{type(e).__name__}: {e}"


def env_switches(name: str) -> tuple[str, ...]:
    """The environment variables read when a ``name`` backend is constructed (class
    attribute ``env_switches``); the API keeps one instance per value of them."""
    try:
        return tuple(getattr(_load(name), "env_switches", ()))
    except (KeyError, ImportError):  # an unknown or unloadable name has none
        return ()


def available(device: torch.device | str = "cpu") -> dict[str, tuple[bool, str]]:
    """``{name: (usable, reason)}`` for every registered backend on ``device``."""
    device = torch.device(device)
    return {name: _check(name, device) for name in _REGISTRY}


def resolve(name: str, device: torch.device | str, precision: str = "fp32") -> tuple[str, str]:
    """Map ``name`` (``auto`` included) to a concrete backend name for ``device`` and
    ``precision``; returns ``(name, note)`` where note says why ``auto`` skipped better
    backends (or that the chosen one lacks the precision)."""
    device = torch.device(device)
    if name not in NAMES:
        raise ValueError(f"unknown backend {name!r}; choose one of {NAMES}")
    if name != "auto":
        ok, why = _check(name, device)
        if not ok:
            raise ValueError(f"backend {name!r} is not available on {device}: {why}")
        return name, ""
    skipped = []
    order = _AUTO.get((device.type, precision)) or _AUTO.get((device.type, None)) or ("reference",)
    for cand in order:
        ok, why = _check(cand, device)
        if ok and precision not in _load(cand).precisions:
            ok, why = False, f"no {precision} precision"
        if ok:
            return cand, "; ".join(skipped)
        skipped.append(f"{cand} unavailable ({why})")
    return "reference", "; ".join(skipped)


def get(name: str = "auto", device: torch.device | str = "cpu", precision: str = "fp32", **kw) -> Backend:
    """Instantiate a backend (``auto`` resolves per device)."""
    concrete, note = resolve(name, device, precision)
    b = _load(concrete)(device=torch.device(device), precision=precision, **kw)
    b.note = note
    return b
