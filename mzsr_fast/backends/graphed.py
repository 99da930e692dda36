"""The shared base of the graph-captured GPU backends (cuda, triton): the device copy of the
weights a call passes again and again, bounded caches of captured CUDA graphs (and of the
per-shape buffers they replay on), and the graph switches.

* Weight cache: the API passes the same (cached) weight tensors for every image, so the
  backend keeps its own device-layout copy of them and restores it with one device copy
  instead of 16 host-to-device copies and re-layouts.  The key holds references to the
  tensors (their ids cannot be reused) and their version counters (an in-place edit
  invalidates it).
* Graph caches: :class:`BoundedCache`, least recently used first out beyond
  ``MZSR_FAST_MAX_GRAPHS`` entries (default 8; the old name ``MZSR_CUDA_MAX_GRAPHS`` is
  still read): each captured graph holds a private memory pool, so a process that sees
  images of many sizes must not keep them all.
* Switches: :func:`env_switch` reads ``MZSR_FAST_<NAME>`` (one naming style) and falls back
  to the name a switch had before (``MZSR_CUDA_GRAPHS``, ``MZSR_TRITON_GRAPHS``).
"""
from __future__ import annotations

import collections
import os
from typing import Mapping

import torch

from .base import Backend, capture_graph

__all__ = ["GraphedBackend", "BoundedCache", "env_switch", "max_graphs"]


def env_switch(name: str, old: str | None = None, default: str = "") -> str:
    """``MZSR_FAST_<name>``, else the legacy variable ``old``, else ``default``."""
    v = os.environ.get(f"MZSR_FAST_{name}")
    if v is None and old is not None:
        v = os.environ.get(old)
    return default if v is None else v


def max_graphs() -> int:
    """Captured graphs kept per cache (``MZSR_FAST_MAX_GRAPHS``, legacy ``MZSR_CUDA_MAX_GRAPHS``; >= 1)."""
    v = env_switch("MAX_GRAPHS", "MZSR_CUDA_MAX_GRAPHS", "8")
    try:
        return max(1, int(v))
    except ValueError:
        raise ValueError(f"MZSR_FAST_MAX_GRAPHS must be an integer, got {v!r}") from None


class BoundedCache(collections.OrderedDict):
    """A dict of at most ``limit`` entries (default :func:`max_graphs` at creation): ``get``
    marks an entry as recently used, ``put`` drops the least recently used beyond the limit
    and calls ``on_evict(key, value)`` for it (e.g. to drop the graphs captured on a
    dropped buffer set)."""

    def __init__(self, limit: int | None = None, on_evict=None):
        super().__init__()
        self.limit = max_graphs() if limit is None else max(1, int(limit))
        self.on_evict = on_evict

    def get(self, key, default=None):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return default

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            k, v = self.popitem(last=False)
            if self.on_evict is not None:
                self.on_evict(k, v)
        return value


class GraphedBackend(Backend):
    """Backend base with the weight cache, bounded graph caches and graph capture of the GPU
    backends.  Subclasses keep their parameters in flat device buffers (``_flats()``) and
    call :meth:`_restore_weights` / :meth:`_remember_weights` in ``prepare``."""

    def __init__(self, device="cuda", precision: str = "fp32"):
        super().__init__(device, precision)
        self._pcache = None
        #: adaptation graphs by (shape, steps, ...) and upscale graphs by shape
        self._graphs = BoundedCache()
        self._fgraphs = BoundedCache()

    def _flats(self) -> tuple[torch.Tensor, ...]:
        """The device buffers that hold the parameters (every copy the kernels read)."""
        raise NotImplementedError

    @staticmethod
    def _weights_key(params: Mapping[str, torch.Tensor]) -> tuple:
        return tuple((k, id(v), v._version, v.data_ptr(), str(v.device), v.dtype) for k, v in sorted(params.items()))

    def _restore_weights(self, params: Mapping[str, torch.Tensor]) -> bool:
        """Copy the cached device layout of ``params`` back (True), or False if not cached."""
        if self._pcache is None or self._pcache[0] != self._weights_key(params):
            return False
        with torch.no_grad():
            for dst, src in zip(self._flats(), self._pcache[2]):
                dst.copy_(src)
        return True

    def _remember_weights(self, params: Mapping[str, torch.Tensor]) -> None:
        """Keep the device layout just made from ``params`` (and references to them)."""
        self._pcache = (self._weights_key(params), dict(params), tuple(f.clone() for f in self._flats()))

    def _forget(self) -> None:
        """Drop the weight copy and every graph (a new parameter layout)."""
        self._pcache = None
        self._graphs.clear()
        self._fgraphs.clear()

    def _capture(self, body, warm=None) -> "torch.cuda.CUDAGraph":
        """Capture ``body`` after one eager run of ``warm`` (default ``body``) on a side stream."""
        return capture_graph(self.device, body, warm)[0]
