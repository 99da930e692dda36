"""Loads the compiled extension ``mzsr_fast._C`` in one place.

Order: the prebuilt module (``pip install`` compiled it) -> a JIT build of the same
sources through ninja (source checkouts only; ``MZSR_FAST_JIT=0`` disables it) -> None,
with the reason kept in :data:`status` and a message naming the reinstall command.
Importing the module registers ``torch.ops.mzsr_fast.*`` for the devices it was built for.
"""
from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_loaded = False
_module = None
#: human-readable account of how the extension was (not) loaded
status = "not loaded yet"

REINSTALL = "pip install --no-build-isolation -v -e .  (from the mzsr_fast source checkout)"


def _jit():
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, load

    from . import _build

    with_cuda = torch.version.cuda is not None and CUDA_HOME is not None and os.environ.get("MZSR_FAST_NO_CUDA") != "1"
    sources, cflags, nvflags, ldflags = _build.ext_sources_and_flags(with_cuda)
    if not sources:
        raise ImportError("no csrc/ sources next to this package (not a source checkout)")
    build_dir = os.path.join(os.path.dirname(_build.CSRC), "build", "jit")
    os.makedirs(build_dir, exist_ok=True)
    return load(
        name="mzsr_fast_C",
        sources=sources,
        extra_cflags=cflags,
        extra_cuda_cflags=nvflags,
        extra_ldflags=ldflags,
        build_directory=build_dir,
        is_python_module=False,
        verbose=os.environ.get("MZSR_FAST_VERBOSE") == "1",
    )


def load():
    """Return the loaded extension module (or the JIT library handle), or None."""
    global _loaded, _module, status
    with _lock:
        if _loaded:
            return _module
        _loaded = True
        if os.environ.get("MZSR_FAST_NO_EXT") == "1":
            status = "disabled by MZSR_FAST_NO_EXT=1"
            return None
        try:
            from . import _C  # noqa: F401

            _module = _C
            status = f"prebuilt ({_C.__file__})"
            return _module
        except ImportError as e:
            prebuilt_err = e
        if os.environ.get("MZSR_FAST_JIT", "1") == "0":
            status = f"no prebuilt extension ({prebuilt_err}); JIT disabled by MZSR_FAST_JIT=0; reinstall: {REINSTALL}"
            return None
        try:
            _module = _jit()
            status = "JIT-built with ninja"
        except Exception as e:  # compiler missing, no sources, build error...
            status = f"no prebuilt extension ({prebuilt_err}) and JIT build failed ({type(e).__name__}: {e}); reinstall: {REINSTALL}"
            _module = None
        return _module


def has_op(name: str, device_type: str = "cpu") -> bool:
    """Is ``torch.ops.mzsr_fast.<name>`` implemented for this device type?"""
    import torch

    if load() is None:
        return False
    try:
        op = getattr(torch.ops.mzsr_fast, name)
    except (AttributeError, RuntimeError):
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type, device_type.upper())
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(op.default.name(), key)
    except Exception:
        return False
