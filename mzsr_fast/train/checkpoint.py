"""Atomic training checkpoints.

A checkpoint is one ``torch.save`` file holding the weights (params dict), the optimizer
state, the step, the RNG states (torch CPU/CUDA, numpy legacy, python ``random``), the
run configuration and the best validation so far.  It is written to a temporary file in
the same folder, flushed and fsync'ed, then ``os.replace``d over the previous one: a
process killed at any instant leaves either the old or the new checkpoint, never a torn
file.  The previous checkpoint is also kept as ``<name>.prev`` so a checkpoint that is
readable but holds diverged weights can still be rolled back by hand.

Loading uses ``weights_only=True`` (no pickled code is executed).
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]


def rng_state() -> dict[str, Any]:
    st = {
        "torch": torch.get_rng_state(),
        "numpy": _np_state_to_tensors(np.random.get_state()),
        "python": _py_state_to_list(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: Mapping[str, Any]) -> None:
    if "torch" in st:
        torch.set_rng_state(st["torch"])
    if "numpy" in st:
        np.random.set_state(_np_state_from_tensors(st["numpy"]))
    if "python" in st:
        random.setstate(_py_state_from_list(st["python"]))
    if "cuda" in st and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(st["cuda"])
        except RuntimeError:  # different number of devices: not fatal for training
            pass


def _np_state_to_tensors(s):
    name, keys, pos, has_gauss, cached = s
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _np_state_from_tensors(d):
    return (d["name"], d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["cached"])


def _py_state_to_list(s):
    version, internal, gauss = s
    return [version, list(internal), gauss]


def _py_state_from_list(v):
    return (v[0], tuple(v[1]), v[2])


def save_checkpoint(path, state: Mapping[str, Any], *, keep_prev: bool = True) -> None:
    """Write ``state`` to ``path`` atomically (temp file + fsync + ``os.replace``).

    ``state`` typically has ``params`` (dict of tensors), ``optimizer`` (state dict),
    ``step`` (int), ``rng`` (:func:`rng_state`), ``config`` (dict), ``best`` (dict).
    Tensors are stored on the CPU.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    state = _to_cpu(dict(state))
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_prev and path.exists():
            prev = path.with_name(path.name + ".prev")
            os.replace(path, prev)  # atomic; `path` is briefly absent, `.prev` is the good copy
        os.replace(tmp, path)
        try:  # make the rename durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path, map_location="cpu") -> dict[str, Any]:
    """Read a checkpoint; falls back to ``<path>.prev`` if ``path`` is missing (a kill
    between the two renames of :func:`save_checkpoint`).  ``ValueError`` if neither loads."""
    path = Path(path)
    errors = []
    for p in (path, path.with_name(path.name + ".prev")):
        if not p.is_file():
            errors.append(f"{p}: missing")
            continue
        try:
            return torch.load(p, map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 - report every candidate
            errors.append(f"{p}: {e}")
    raise ValueError("no loadable checkpoint: " + "; ".join(errors))


def _to_cpu(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_cpu(v) for v in x)
    return x
