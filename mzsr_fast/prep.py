"""The inputs of one MZSR pass from the LR image: ``son_up`` (the degraded LR image, resized
back to the LR size: the adaptation input) and ``lr_up`` (the LR image resized to the output
size: the upscale input), whole (:func:`make_inputs`) or, for a tiled upscale, one tile
region at a time (:func:`upsampled_region`: exact, the cubic kernel reaches 2 LR pixels).

On CUDA the small ops of ``degrade`` + two ``imresize`` (their count for a 3-channel image
with a 21x21 kernel: row prep/dispatched_ops of benchmarks/results/h100.csv) are captured
once per (shape, kernel, scale, subsampling) into a CUDA graph and replayed: on the host
that is one launch instead of ~60 kernel launches issued while the GPU waits for its first
real work.  The replayed ops are the eager ones, so the results are bitwise equal (tested
in ``tests/test_prep.py``).  ``MZSR_FAST_PREP_GRAPH=0`` turns the graph off.
"""
from __future__ import annotations

import collections
import hashlib
import os
import threading

import numpy as np
import torch

from .backends.base import capture_graph
from .degradation import degrade, imresize

__all__ = ["make_inputs", "eager_inputs", "son_up", "upsampled_region", "RESIZE_MARGIN"]

#: LR margin of a per-tile bicubic upsampling (the cubic kernel reaches 2 LR pixels; +2 spare)
RESIZE_MARGIN = 4

#: captured graphs kept per thread (each holds its image-sized buffers on the GPU)
_MAX_GRAPHS = 8
_tls = threading.local()


def son_up(x: torch.Tensor, kernel: np.ndarray | None, scale: int, subsampling: str) -> torch.Tensor:
    """The adaptation input: x degraded (``degrade``) and resized back to x's size, plain ops."""
    return imresize(degrade(x, kernel, scale, subsampling), output_shape=tuple(x.shape[-2:]))


def eager_inputs(x: torch.Tensor, kernel: np.ndarray | None, scale: int, subsampling: str):
    """x: (1, 3, H, W) float32 in [0, 1] -> (son_up (1, 3, H, W), lr_up (1, 3, sH, sW)),
    float32, plain ops."""
    h, w = x.shape[-2:]
    return son_up(x, kernel, scale, subsampling), imresize(x, output_shape=(h * scale, w * scale))


def upsampled_region(lr: torch.Tensor, scale: int, ry0: int, ry1: int, rx0: int, rx1: int) -> torch.Tensor:
    """Rows ``[ry0, ry1)`` and columns ``[rx0, rx1)`` of ``imresize(lr, scale)`` (bicubic,
    output ``scale`` times the LR size), computed from an LR crop with a margin."""
    h, w = lr.shape[-2:]
    ly0, ly1 = max(0, ry0 // scale - RESIZE_MARGIN), min(h, -(-ry1 // scale) + RESIZE_MARGIN)
    lx0, lx1 = max(0, rx0 // scale - RESIZE_MARGIN), min(w, -(-rx1 // scale) + RESIZE_MARGIN)
    crop = lr[..., ly0:ly1, lx0:lx1]
    up = imresize(crop, output_shape=((ly1 - ly0) * scale, (lx1 - lx0) * scale))
    oy, ox = ly0 * scale, lx0 * scale
    return up[..., ry0 - oy:ry1 - oy, rx0 - ox:rx1 - ox].contiguous()


def _graphs_enabled() -> bool:
    return os.environ.get("MZSR_FAST_PREP_GRAPH", "1") != "0"


def _key(x: torch.Tensor, kernel, scale: int, subsampling: str):
    kk = None
    if kernel is not None:
        ka = np.ascontiguousarray(kernel, dtype=np.float64)
        kk = (ka.shape, hashlib.sha1(ka.tobytes()).hexdigest())
    return (tuple(x.shape), x.dtype, str(x.device), kk, int(scale), subsampling)


def make_inputs(x: torch.Tensor, kernel: np.ndarray | None, scale: int, subsampling: str):
    """Same as :func:`eager_inputs`; on CUDA through a cached CUDA graph.

    The returned tensors of the graph path are the graph's static outputs: valid until the
    next call with the same key in the same thread (the API consumes them at once, in
    stream order)."""
    if x.device.type != "cuda" or not _graphs_enabled() or torch.cuda.is_current_stream_capturing():
        return eager_inputs(x, kernel, scale, subsampling)
    cache = getattr(_tls, "graphs", None)
    if cache is None:
        cache = _tls.graphs = collections.OrderedDict()
    key = _key(x, kernel, scale, subsampling)
    ent = cache.get(key)
    if ent is None:
        ent = _capture(x, kernel, scale, subsampling)
        cache[key] = ent
        while len(cache) > _MAX_GRAPHS:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    graph, x_static, outs = ent
    x_static.copy_(x)
    graph.replay()
    return outs


def _capture(x, kernel, scale, subsampling):
    x_static = x.clone()
    # the warm-up run fills the device caches of resize weights/kernels and picks the cuDNN
    # algorithms, so the capture makes no host-to-device copies; thread_local: other threads
    # may keep launching work while this one captures
    graph, outs = capture_graph(x.device, lambda: eager_inputs(x_static, kernel, scale, subsampling),
                                capture_error_mode="thread_local")
    return graph, x_static, outs
