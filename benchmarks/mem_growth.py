"""Memory growth of ``adapt_and_upscale`` over many calls (issue 4, part 4).

Per backend: warm-up calls, then the resident set size (``VmRSS``) and the number of live
Python objects are read; ``--calls`` more calls are made on images that vary in content
and size; then both are read again.  Before each reading ``gc.collect()`` and glibc's
``malloc_trim(0)`` return *freed* memory to the OS, so what is left of the growth is
memory still held (a leak, a cache that grows), not allocator slack.

    python benchmarks/mem_growth.py                       # print, and write the JSON below
    python benchmarks/mem_growth.py --json -              # JSON to stdout only
    python benchmarks/mem_growth.py --backends cpu --calls 100 --size 16

Writes ``benchmarks/results/mem_growth_<date>.json`` by default (``--json PATH`` elsewhere).
Run it in its own process: the numbers are those of this process alone.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def rss_bytes() -> int:
    """Current resident set size (Linux ``/proc/self/status`` VmRSS), bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the reading keeps allocator slack
        pass


def measure(backend: str, *, calls: int = 100, warmup: int = 10, size: int = 16, steps: int = 2,
            weights: str = "shipped") -> dict:
    """Growth of RSS (bytes) and live Python objects over ``calls`` calls after ``warmup``.

    Images: ``size`` x ``size`` +- 2 pixels (three sizes in turn, so per-size caches and
    buffers are exercised), uint8 RGB, new content each call; a 3x3 Gaussian kernel
    (``weights="shipped"``: the cached shipped mzsr_x2_direct) or a params dict.
    """
    import torch

    from mzsr_fast import adapt_and_upscale, gaussian_kernel, model

    k = gaussian_kernel(3, 0.8)
    w = None if weights == "shipped" else model.init_params(0)
    rng = np.random.default_rng(0)
    sizes = [size - 2, size, size + 2]

    def call(i):
        s = sizes[i % 3]
        img = rng.integers(0, 256, (s, s + 1, 3), dtype=np.uint8)
        out = adapt_and_upscale(img, kernel=k, steps=steps, weights=w, backend=backend, device="cpu")
        assert out.shape == (2 * s, 2 * (s + 1), 3)

    for i in range(warmup):
        call(i)
    _trim()
    rss0, obj0 = rss_bytes(), len(gc.get_objects())
    t = time.perf_counter()
    for i in range(calls):
        call(warmup + i)
    dt = time.perf_counter() - t
    _trim()
    rss1, obj1 = rss_bytes(), len(gc.get_objects())
    return {
        "backend": backend, "weights": weights, "calls": calls, "warmup": warmup, "lr_sizes": sizes, "steps": steps,
        "torch_threads": torch.get_num_threads(), "rss_before_mib": rss0 / 2**20, "rss_after_mib": rss1 / 2**20,
        "rss_growth_mib": (rss1 - rss0) / 2**20, "py_objects_growth": obj1 - obj0, "seconds": dt,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="reference,cpu")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--weights", default="shipped", choices=["shipped", "dict"])
    ap.add_argument("--json", default=None, help="output path, or - for stdout (default: benchmarks/results/...)")
    a = ap.parse_args(argv)
    from benchmarks.harness import machine_info

    rows = [measure(b, calls=a.calls, warmup=a.warmup, size=a.size, steps=a.steps, weights=a.weights)
            for b in a.backends.split(",") if b]
    res = {"date": datetime.date.today().isoformat(), "machine": machine_info(), "rows": rows}
    text = json.dumps(res, indent=1)
    if a.json == "-":
        print(text)
        return 0
    for r in rows:
        print(f"{r['backend']:<10} {r['calls']} calls after {r['warmup']} warm-up: RSS {r['rss_before_mib']:.1f} -> "
              f"{r['rss_after_mib']:.1f} MiB ({r['rss_growth_mib']:+.2f} MiB), Python objects "
              f"{r['py_objects_growth']:+d}, {r['seconds']:.1f} s")
    path = a.json or os.path.join(ROOT, "benchmarks", "results", f"mem_growth_{res['date']}.json")
    with open(path, "w") as f:
        f.write(text + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
