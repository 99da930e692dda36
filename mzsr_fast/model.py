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

from . import chain

__all__ = [
    "CHANNELS",
    "MZSRNet",
    "param_names",
    "init_params",
    "forward",
    "save_weights",
    "load_weights",
    "read_safetensors",
    "checked_weights",
    "check_params",
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
        plist = [t for conv in self.layers for t in (conv.weight, conv.bias)]
        return chain.forward(chain.NCHW, plist, x)

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
    """Functional forward: ``x + net(x)``; x ``(N, 3, H, W)`` float, NCHW or channels_last
    (:func:`mzsr_fast.chain.forward` with the ``F.conv2d`` ops; differentiable)."""
    return chain.forward(chain.NCHW, chain.plist_of(params), x)


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
    write_safetensors(path, params, {"arch": ARCH, **(metadata or {})})


def write_safetensors(path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, object]) -> None:
    """``tensors`` as fp32 safetensors at ``path``, atomically (temp file + rename); metadata
    values stored as strings (non-strings JSON-encoded).  Shared by every network's weights."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


#: metadata key that marks a kernel-conditioned bank of starts (:mod:`mzsr_fast.bank`)
BANK_KEY = "bank"

#: metadata key of a weights file's recommended adaptation schedule: a JSON list of
#: per-step learning rates; steps beyond its length use its last value
LR_SCHEDULE_KEY = "lr_schedule"


def schedule_from_metadata(meta: Mapping[str, str], what: str = "weights") -> list[float] | None:
    """The recommended per-step learning rates recorded in a weights file's metadata
    (``lr_schedule``: JSON list of finite floats >= 0), or None.  ``ValueError`` if malformed."""
    raw = (meta or {}).get(LR_SCHEDULE_KEY)
    if raw is None:
        return None
    try:
        vals = json.loads(raw)
        if not isinstance(vals, list) or not vals:
            raise ValueError("not a non-empty list")
        out = [float(v) for v in vals]
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what}: metadata {LR_SCHEDULE_KEY}={raw!r} is not a JSON list of numbers ({e})") from e
    if not all(math.isfinite(v) and v >= 0 for v in out):
        raise ValueError(f"{what}: metadata {LR_SCHEDULE_KEY} must hold finite numbers >= 0, got {out}")
    return out


def verify_shipped(path: Path) -> None:
    """A file of ``weights/`` listed in ``SHA256SUMS`` must match its recorded SHA-256
    (``ValueError`` naming the file otherwise); other files pass."""
    sums = _shipped_sums()
    if path.resolve().parent == WEIGHTS_DIR and path.name in sums:
        digest = _sha256(path)
        if digest != sums[path.name]:
            raise ValueError(
                f"weights file {path} does not match its recorded SHA-256 "
                f"({digest[:12]}... != {sums[path.name][:12]}...): reinstall mzsr_fast"
            )


def load_weights(path, device=None, *, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load safetensors weights -> ``(params, metadata)``.

    Only safetensors is accepted (never pickle).  Shipped files are checked against the
    SHA-256 recorded in ``weights/SHA256SUMS``.  A missing, corrupt or wrongly shaped
    file is a ``ValueError`` naming the file and the problem.
    """
    path = Path(path)
    params, meta = checked_weights(*read_safetensors(path, verify=verify), path)
    if device is not None:
        params = {k: v.to(device) for k, v in params.items()}
    return params, meta


def checked_weights(tensors, meta, path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The ``(tensors, metadata)`` of a file as :func:`load_weights` returns them (every
    problem a ``ValueError`` naming ``path``; a bank file is named as such)."""
    if BANK_KEY in meta:
        raise ValueError(f"weights file {path} is a kernel-conditioned bank of starts: load it with "
                         "mzsr_fast.bank.load_bank (adapt_and_upscale picks the entry from the kernel)")
    return checked_file_params(tensors, f"weights file {path}"), meta


def checked_file_params(tensors, what: str) -> dict[str, torch.Tensor]:
    """:func:`check_params` on tensors read from a file: every problem a ``ValueError``
    (integer tensors are a bad file too, not a caller's TypeError)."""
    try:
        return check_params(tensors, what)
    except TypeError as e:
        raise ValueError(str(e)) from e


def read_safetensors(path, *, verify: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors file, unchecked (shipped files verified
    against ``weights/SHA256SUMS``); ``ValueError`` naming the file for a missing or
    unreadable one."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file not found: {path}")
    if verify:
        verify_shipped(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError, OSError, a malformed header, ...
        raise ValueError(f"cannot read weights file {path} as safetensors: {e}{_not_safetensors_hint(path)}") from e
    return tensors, meta


def check_params(params, what: str = "weights") -> dict[str, torch.Tensor]:
    """Validate a params dict and return a new dict ``{name: float32 tensor}`` in
    :func:`param_names` order (same device; the caller's tensors are never modified).

    ``TypeError`` for a non-mapping or a value that is not a real tensor; ``ValueError`` for
    missing or unexpected keys, a wrong shape, NaN/inf.  ``what`` names the source in
    the message.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"{what} must be a dict of tensors, got {type(params).__name__}")
    bias = "layers.0.bias" in params
    expected = set(param_names(bias))
    if set(params) != expected:
        missing, extra = sorted(expected - set(params)), sorted(set(params) - expected)
        raise ValueError(f"{what}: unexpected tensors (missing {missing}, unexpected {extra})")
    out = {}
    for i, (ci, co) in enumerate(CHANNELS):
        for k, shape in ((f"layers.{i}.weight", (co, ci, 3, 3)), (f"layers.{i}.bias", (co,))):
            if k not in params:
                continue
            v = params[k]
            if not isinstance(v, torch.Tensor) or not v.is_floating_point():
                got = type(v).__name__ if not isinstance(v, torch.Tensor) else f"tensor of {v.dtype}"
                raise TypeError(f"{what}: {k} must be a real floating-point torch.Tensor, got {got}")
            if tuple(v.shape) != shape:
                raise ValueError(f"{what}: {k} has shape {tuple(v.shape)}, want {shape}")
            out[k] = v.detach().to(torch.float32)
    # one device->host read for all 16 tensors (where they share a device)
    flags = [torch.isfinite(v).all() for v in out.values()]
    ok = bool(torch.stack(flags).all()) if len({f.device for f in flags}) == 1 else all(bool(f) for f in flags)
    if not ok:
        bad = [k for k, v in out.items() if not torch.isfinite(v).all()]
        raise ValueError(f"{what}: tensor {bad[0]} contains NaN or inf")
    return {k: out[k] for k in param_names(bias)}


def _not_safetensors_hint(path: Path) -> str:
    """' (a pickle/.pt file: ...)' where the file looks like torch.save output."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return ""
    # torch.save writes a zip archive (PK\x03\x04) or, in the legacy format, a raw
    # pickle (protocol 2+ starts with 0x80)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or path.suffix.lower() in (".pt", ".pth", ".ckpt", ".pkl", ".bin"):
        return " (it looks like a pickle/torch.save file: only safetensors is loaded, pickles can run code)"
    return ""


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
    # a bank of kernel-conditioned starts (mzsr_fast.bank), its fallback entry the meta-init
    (2, "direct"): ["mzsr_x2_direct_bank.safetensors", "mzsr_x2_direct.safetensors", "pretrain_x2_bicubic.safetensors"],
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
