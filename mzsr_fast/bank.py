"""Kernel-conditioned starts: a weights *bank* holds several sets of MZSR parameters, each
for one region of blur kernels, and picks the start of the adaptation from the kernel that
comes with the image (MZSR needs that kernel anyway, to make the LR-son).

A bank is one safetensors file: entry ``name``'s tensors are stored as
``{name}/layers.{i}.weight`` etc., and the metadata key ``bank`` holds a JSON list of
entries, tried in order, the first whose ``match`` the kernel satisfies wins::

    [{"name": "iso_1.5_2.25", "match": {"lam1": [1.0, null], "ratio": [null, 1.3],
      "gmean": [1.5, 2.25]}, "lr_schedule": [0.002, 0.001]}, ...,
     {"name": "meta", "match": {}}]

``match`` bounds (``[lo, hi)``, ``null`` = open) apply to the kernel's second moments:
``lam1 >= lam2`` are the eigenvalues of its covariance (pixels^2; a Gaussian's variances),
``ratio = lam1 / lam2`` and ``gmean = sqrt(lam1 lam2)``; keys ``lam1``, ``lam2``, ``ratio``,
``gmean``.  An empty ``match`` takes every
kernel; the last entry must have one, and it also takes ``kernel=None`` (bicubic).  Entries
may carry their own ``lr_schedule`` (else the file's).

Why: one meta-learned start must serve every kernel, and on the CPU budget of this project it
stops 0.4-0.8 dB below the paper's MZSR(10) (docs/training.md); a start trained for the
kernel's region, then adapted as MZSR does, is what a known kernel buys (measured in
``runs/bank_2026-12-05/``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from . import model as _model

__all__ = ["BANK_KEY", "Entry", "Bank", "kernel_moments", "is_bank", "load_bank", "bank_from_tensors", "write_bank"]

#: metadata key that marks a bank file and lists its entries (defined once, in model)
BANK_KEY = _model.BANK_KEY
_MATCH_KEYS = ("lam1", "lam2", "ratio", "gmean")


def kernel_moments(kernel) -> dict[str, float]:
    """kernel ``(kh, kw)`` (any non-negative array summing to > 0) -> ``{"lam1", "lam2",
    "ratio", "gmean"}``: the eigenvalues of its covariance (largest first, pixels^2), their
    ratio and geometric mean.  A delta kernel has ``lam1 = lam2 = 0`` (ratio 1, gmean 0)."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or not np.isfinite(k).all() or k.sum() <= 0:
        raise ValueError(f"kernel must be a finite 2-D array with a positive sum, got shape {k.shape}")
    k = k / k.sum()
    ys, xs = np.mgrid[: k.shape[0], : k.shape[1]].astype(np.float64)
    my, mx = (k * ys).sum(), (k * xs).sum()
    dy, dx = ys - my, xs - mx
    cov = np.array([[(k * dx * dx).sum(), (k * dx * dy).sum()], [(k * dx * dy).sum(), (k * dy * dy).sum()]])
    lam2, lam1 = (max(float(v), 0.0) for v in np.linalg.eigvalsh(cov))
    ratio = lam1 / lam2 if lam2 > 1e-12 else (1.0 if lam1 <= 1e-12 else math.inf)
    return {"lam1": lam1, "lam2": lam2, "ratio": ratio, "gmean": math.sqrt(lam1 * lam2)}


@dataclass
class Entry:
    """One start of a bank: ``params`` (MZSR dict, float32 CPU), the ``match`` bounds (see
    the module docstring) and an optional per-entry ``lr_schedule``."""

    name: str
    params: dict[str, torch.Tensor]
    match: dict[str, list] = field(default_factory=dict)
    lr_schedule: list[float] | None = None
    #: how the entry was trained (``meta``: a meta-learned start, not meant for steps=0)
    stage: str = ""

    def matches(self, moments: Mapping[str, float] | None) -> bool:
        if not self.match:
            return True
        if moments is None:
            return False
        for key, (lo, hi) in self.match.items():
            v = moments[key]
            if (lo is not None and v < lo) or (hi is not None and v >= hi):
                return False
        return True


@dataclass
class Bank:
    entries: list[Entry]
    metadata: dict[str, str]

    def select(self, kernel) -> Entry:
        """The entry for ``kernel`` (``(kh, kw)`` array, or None: the fallback entry)."""
        m = kernel_moments(kernel) if kernel is not None else None
        for e in self.entries:
            if e.matches(m):
                return e
        raise AssertionError("a bank's last entry matches every kernel")  # checked at load

    def names(self) -> list[str]:
        return [e.name for e in self.entries]


def is_bank(metadata: Mapping[str, str] | None) -> bool:
    return BANK_KEY in (metadata or {})


def _check_entries(spec, what: str) -> list[dict]:
    if not isinstance(spec, list) or not spec:
        raise ValueError(f"{what}: metadata {BANK_KEY} must be a non-empty JSON list of entries")
    seen = set()
    for i, e in enumerate(spec):
        if not isinstance(e, dict) or not isinstance(e.get("name"), str) or not e["name"] or "/" in e["name"]:
            raise ValueError(f"{what}: bank entry {i} needs a 'name' (a non-empty string without '/'), got {e!r}")
        if e["name"] in seen:
            raise ValueError(f"{what}: bank entry name {e['name']!r} appears twice")
        seen.add(e["name"])
        match = e.get("match", {})
        if not isinstance(match, dict):
            raise ValueError(f"{what}: bank entry {e['name']!r}: 'match' must be an object, got {match!r}")
        for key, b in match.items():
            if key not in _MATCH_KEYS:
                raise ValueError(f"{what}: bank entry {e['name']!r}: unknown match key {key!r} (use {_MATCH_KEYS})")
            if (not isinstance(b, list) or len(b) != 2
                    or not all(v is None or (isinstance(v, (int, float)) and math.isfinite(v)) for v in b)):
                raise ValueError(f"{what}: bank entry {e['name']!r}: match {key} must be [lo, hi] "
                                 f"(numbers or null), got {b!r}")
    if spec[-1].get("match"):
        raise ValueError(f"{what}: the last bank entry ({spec[-1]['name']!r}) must have an empty match "
                         "(it takes every other kernel and kernel=None)")
    return spec


def load_bank(path, *, verify: bool = True) -> Bank:
    """A bank file -> :class:`Bank` (every entry's tensors checked as
    :func:`mzsr_fast.model.check_params` does).  ``ValueError`` naming the file and the
    problem for a malformed one; shipped banks are checked against ``weights/SHA256SUMS``."""
    return bank_from_tensors(*_model.read_safetensors(path, verify=verify), path)


def bank_from_tensors(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str], path) -> Bank:
    """:func:`load_bank` on the tensors and metadata already read from ``path``."""
    what = f"weights bank {path}"
    if not is_bank(meta):
        raise ValueError(f"{what}: no metadata {BANK_KEY!r}: not a bank (load it with mzsr_fast.model.load_weights)")
    try:
        spec = json.loads(meta[BANK_KEY])
    except ValueError as e:
        raise ValueError(f"{what}: metadata {BANK_KEY} is not JSON ({e})") from e
    spec = _check_entries(spec, what)
    names = {e["name"] for e in spec}
    stray = sorted({k.split("/", 1)[0] for k in tensors} - names)
    if stray:
        raise ValueError(f"{what}: tensors of entries not listed in {BANK_KEY}: {stray}")
    entries = []
    for e in spec:
        sub = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.split("/", 1)[0] == e["name"]}
        params = _model.checked_file_params(sub, f"{what}, entry {e['name']!r}")
        sched = None
        if "lr_schedule" in e:
            sched = _model.schedule_from_metadata({_model.LR_SCHEDULE_KEY: json.dumps(e["lr_schedule"])},
                                                  f"{what}, entry {e['name']!r}")
        entries.append(Entry(e["name"], params, dict(e.get("match", {})), sched, str(e.get("stage", ""))))
    return Bank(entries, dict(meta))


def write_bank(path, entries: Sequence[Entry], metadata: Mapping[str, object] | None = None) -> None:
    """Write ``entries`` (in selection order; the last with an empty ``match``) as one bank
    file, atomically; ``metadata`` is stored besides ``bank`` and ``arch``."""
    spec = []
    for e in entries:
        d = {"name": e.name, "match": e.match}
        if e.lr_schedule is not None:
            d["lr_schedule"] = list(e.lr_schedule)
        if e.stage:
            d["stage"] = e.stage
        spec.append(d)
    _check_entries(json.loads(json.dumps(spec)), f"weights bank {path}")
    tensors = {}
    for e in entries:
        for k, v in _model.check_params(e.params, f"bank entry {e.name!r}").items():
            tensors[f"{e.name}/{k}"] = v
    _model.write_safetensors(Path(path), tensors, {"arch": _model.ARCH, **(metadata or {}), BANK_KEY: spec})
