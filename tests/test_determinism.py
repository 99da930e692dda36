"""Determinism (issue 4, part 5): on CPU, the same call gives bitwise the same result --
run after run in one process and across processes -- for the reference and cpu backends.

``adapt_and_upscale`` draws no random numbers except the crops of ``adapt_on="crops"``,
which come from a ``torch.Generator`` seeded with ``crop_seed``; the weights' init
(``model.init_params(seed)``) is seeded too.  Results are compared as float32 (a uint8
output would hide differences below 1/255).  The cpu backend's sums are in a fixed order
for a fixed thread count (its weight-gradient partials are per thread, so another thread
count may differ in the last bits; docs/api.md, "Threads, state and determinism").
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mzsr_fast import adapt_and_upscale, gaussian_kernel, model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ["reference", "cpu"]
IMG = np.random.default_rng(11).random((16, 14, 3)).astype(np.float32)  # > one OpenMP chunk of rows per thread
K = gaussian_kernel(5, 1.2)
P = model.init_params(5)


def run(backend: str, **kw) -> np.ndarray:
    args = dict(kernel=K, steps=4, weights=P, backend=backend, device="cpu")
    args.update(kw)
    return adapt_and_upscale(IMG, **args)


def digests(backends=BACKENDS) -> dict:
    """sha256 of the float32 result bytes per (backend, mode)."""
    out = {}
    for b in backends:
        out[f"{b}/full"] = hashlib.sha256(run(b).tobytes()).hexdigest()
        out[f"{b}/crops"] = hashlib.sha256(
            run(b, adapt_on="crops", crop_size=6, n_crops=3, crop_seed=1).tobytes()).hexdigest()
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_repeatable_in_process(backend):
    """Repeated runs, bitwise equal (with the per-thread partial sums of the cpu backend's
    weight gradient scheduled dynamically, 2 threads gave up to 1.4e-6 differences)."""
    first = run(backend)
    assert first.dtype == np.float32
    for _ in range(5 if backend == "cpu" else 2):
        assert np.array_equal(run(backend), first)


@pytest.mark.parametrize("backend", BACKENDS)
def test_crops_follow_the_seed(backend):
    a = run(backend, adapt_on="crops", crop_size=6, n_crops=3, crop_seed=1)
    assert np.array_equal(run(backend, adapt_on="crops", crop_size=6, n_crops=3, crop_seed=1), a)
    assert not np.array_equal(run(backend, adapt_on="crops", crop_size=6, n_crops=3, crop_seed=2), a)


def test_init_params_seeded():
    for k, v in model.init_params(5).items():
        assert torch.equal(v, P[k])
    assert not torch.equal(model.init_params(6)["layers.3.weight"], P["layers.3.weight"])


def test_repeatable_across_processes():
    """Two fresh processes with this process's thread count give the digests of this one."""
    here = digests()
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
    code = ("import sys, json; sys.path.insert(0, %r)\n"
            "from tests.test_determinism import digests\nprint(json.dumps(digests()))\n") % REPO
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                           env=env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout.strip().splitlines()[-1]) == here
