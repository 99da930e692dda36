"""The MZSR network (SPEC section 1) as functional parameters, its ``nn.Module`` view,
initialisation, and safetensors weights I/O with a registry of shipped weights.

Parameters are a plain ``dict[str, Tensor]`` with the keys of the ``nn.Module`` view
(``layers.{i}.weight`` ``(Cout, Cin, 3, 3)``, ``layers.{i}.bias`` ``(Cout,)``, i = 0..7),
so ``torch.func.functional_call(MZSRNet(), params, x)`` works and adaptation needs no
module state.  The canonical order of the 16 tensors is ``param_names()``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "CHANNELS",
    "MZSRNet",
    "param_names",
    "init_params",
    "forward",
    "save_weights",
    "load_weights",
    "default_weights_path",
    "num_params",
    "flops_per_pixel",
]

#: (Cin, Cout) of the 8 conv layers: 3->64, six 64->64, 64->3.
CHANNELS: tuple[tuple[int, int], ...] = ((3, 64),) + ((64, 64),) * 6 + ((64, 3),)
ARCH = "mzsr-8x3x3x64-residual"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def param_names(bias: bool = True) -> list[str]:
    names = []
    for i in range(len(CHANNELS)):
        names.append(f"layers.{i}.weight")
        if bias:
            names.append(f"layers.{i}.bias")
    return names


def num_params(bias: bool = True) -> int:
    return sum(ci * co * 9 + (co if bias else 0) for ci, co in CHANNELS)


def flops_per_pixel() -> int:
    """Multiply-adds x2 of one forward pass per output pixel (bias/ReLU not counted)."""
    return 2 * sum(ci * co * 9 for ci, co in CHANNELS)


class MZSRNet(nn.Module):
    """``nn.Module`` view of the network: ``forward(x) = x + net(x)``.

    x: ``(N, 3, H, W)`` float32 (the bicubic-upsampled LR), out the same shape.
    """

    def __init__(self, bias: bool = True):
        super().__init__()
        self.layers = nn.ModuleList(nn.Conv2d(ci, co, 3, padding=1, bias=bias) for ci, co in CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, conv in enumerate(self.layers):
            h = conv(h)
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return x + h

    @classmethod
    def from_params(cls, params: Mapping[str, torch.Tensor]) -> "MZSRNet":
        net = cls(bias="layers.0.bias" in params)
        net.load_state_dict({k: v.detach().clone() for k, v in params.items()})
        return net.to(next(iter(params.values())).device)


def init_params(
    seed: int | None = 0,
    *,
    bias: bool = True,
    device=None,
    dtype=torch.float32,
    init: str = "variance_scaling",
) -> dict[str, torch.Tensor]:
    """Fresh parameters.  ``variance_scaling``: N(0, 1/fan_in) truncated at 2 std as
    TF's ``variance_scaling_initializer`` (MZSR); ``zssr``: N(0, 0.1/fan_in); bias zero."""
    g = torch.Generator().manual_seed(0 if seed is None else seed)
    params = {}
    for i, (ci, co) in enumerate(CHANNELS):
        fan_in = ci * 9
        if init == "variance_scaling":
            # TF truncated-normal variance scaling: std / .87962566 so the truncated
            # distribution keeps variance 1/fan_in.
            std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
            w = torch.empty(co, ci, 3, 3)
            nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std, generator=g)
        elif init == "zssr":
            w = torch.randn(co, ci, 3, 3, generator=g) * math.sqrt(0.1 / fan_in)
        else:
            raise ValueError(f"unknown init {init!r}")
        params[f"layers.{i}.weight"] = w.to(device=device, dtype=dtype)
        if bias:
            params[f"layers.{i}.bias"] = torch.zeros(co, device=device, dtype=dtype)
    return params


def forward(params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Functional forward: ``x + net(x)``; x ``(N, 3, H, W)`` float, NCHW or channels_last."""
    h = x
    n = len(CHANNELS)
    for i in range(n):
        h = F.conv2d(h, params[f"layers.{i}.weight"], params.get(f"layers.{i}.bias"), padding=1)
        if i < n - 1:
            h = F.relu(h)
    return x + h


# ----------------------------------------------------------------------------- weights I/O
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_weights(path, params: Mapping[str, torch.Tensor], metadata: Mapping[str, object] | None = None) -> None:
    """Write params as safetensors (atomically: temp file + rename).

    ``metadata`` values are stored as strings (non-strings JSON-encoded); ``arch`` is added.
    """
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"arch": ARCH}
    for k, v in (metadata or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in params.items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_weights(path, device=None, *, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load safetensors weights -> ``(params, metadata)``.

    Only safetensors is accepted (never pickle).  Shipped files are checked against the
    SHA-256 recorded in ``weights/SHA256SUMS``.  A missing, corrupt or wrongly shaped
    file is a ``ValueError`` naming the file and the problem.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file not found: {path}")
    if verify:
        sums = _shipped_sums()
        if path.resolve().parent == WEIGHTS_DIR and path.name in sums:
            digest = _sha256(path)
            if digest != sums[path.name]:
                raise ValueError(
                    f"weights file {path} does not match its recorded SHA-256 "
                    f"({digest[:12]}... != {sums[path.name][:12]}...): reinstall mzsr_fast"
                )
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            params = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ValueError(f"cannot read weights file {path} as safetensors: {e}") from e
    bias = "layers.0.bias" in params
    expected = set(param_names(bias))
    if set(params) != expected:
        raise ValueError(f"weights file {path}: unexpected tensors {sorted(set(params) ^ expected)}")
    for i, (ci, co) in enumerate(CHANNELS):
        w = params[f"layers.{i}.weight"]
        if tuple(w.shape) != (co, ci, 3, 3):
            raise ValueError(f"weights file {path}: layers.{i}.weight has shape {tuple(w.shape)}, want {(co, ci, 3, 3)}")
        if bias and tuple(params[f"layers.{i}.bias"].shape) != (co,):
            raise ValueError(f"weights file {path}: layers.{i}.bias has wrong shape")
    for k, v in params.items():
        if not torch.isfinite(v).all():
            raise ValueError(f"weights file {path}: tensor {k} contains NaN or inf")
    params = {k: params[k].to(device=device, dtype=torch.float32) for k in param_names(bias)}
    return params, meta


def _shipped_sums() -> dict[str, str]:
    f = WEIGHTS_DIR / "SHA256SUMS"
    if not f.is_file():
        return {}
    out = {}
    for line in f.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[1].lstrip("*")] = parts[0]
    return out


#: Shipped weights per (scale, subsampling), best first.  Files live in ``weights/``.
SHIPPED = {
    (2, "direct"): ["mzsr_x2_direct.safetensors", "pretrain_x2_bicubic.safetensors"],
    (2, "bicubic"): ["mzsr_x2_bicubic.safetensors", "pretrain_x2_bicubic.safetensors"],
    (4, "direct"): ["mzsr_x4_direct.safetensors"],
}


def default_weights_path(scale: int = 2, subsampling: str = "direct") -> Path:
    """The shipped weights file for ``(scale, subsampling)``; ``ValueError`` if none."""
    for name in SHIPPED.get((int(scale), subsampling), []):
        p = WEIGHTS_DIR / name
        if p.is_file():
            return p
    have = sorted(p.name for p in WEIGHTS_DIR.glob("*.safetensors"))
    raise ValueError(
        f"no shipped weights for scale={scale}, subsampling={subsampling!r} "
        f"(shipped: {have}); pass weights=PATH"
    )
