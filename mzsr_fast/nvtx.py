"""NVTX ranges for Nsight (``mzsr/adapt/step{i}/{fwd,bwd,update}``), a no-op where torch
has no CUDA (the CPU wheel) or NVTX is unavailable, and while CUDA graphs capture."""
from __future__ import annotations

import contextlib

import torch

_enabled = None


def enabled() -> bool:
    global _enabled
    if _enabled is None:
        try:
            _enabled = torch.cuda.is_available() and hasattr(torch.cuda, "nvtx")
            if _enabled:
                torch.cuda.nvtx.range_push("mzsr/probe")
                torch.cuda.nvtx.range_pop()
        except Exception:
            _enabled = False
    return _enabled


@contextlib.contextmanager
def range(name: str):  # noqa: A001  (mirrors nvtx.range)
    """``with nvtx.range("mzsr/adapt/step0/fwd"): ...``"""
    if not enabled():
        yield
        return
    torch.cuda.nvtx.range_push(name)
    try:
        yield
    finally:
        torch.cuda.nvtx.range_pop()
