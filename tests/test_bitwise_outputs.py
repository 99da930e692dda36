"""Outputs bitwise equal to the ones saved before the planner/runner/chain redesign (issue 19).

``tests/data/bitwise_outputs.npz`` holds the float32 results of ``adapt_and_upscale`` on
crops of the Set5 g^d_2.0 LR images (``shared/data/set5_g20``, its ``kernel.mat``) with the
meta-learned x2 direct weights ``mzsr_x2_direct.safetensors``, on the ``reference`` and ``cpu`` backends, including one tiled call
(a ``max_memory`` that forces tiles in both phases), one ``adapt_on="crops"`` call and one
``lr_search`` call.  They were made by ``python tests/test_bitwise_outputs.py --write`` at
the commit recorded in the file (key ``commit``), with one thread.

Bitwise equality holds for the same CPU kind and thread count: the compiled cpu backend
picks AVX-512 / AVX2 / scalar kernels at run time and its weight-gradient partials are per
thread, and oneDNN (reference) picks kernels by CPU kind too.  So the reference outputs are
held to ``OTHER_CPU_ATOL`` on a machine other than the saved one (an AMD EPYC differs from the
Intel Xeon file by 1.19e-07), bitwise on the same one; the cpu backend is always held to
bitwise.  The file records the cpu backend's ISA and the machine; a failure prints both with
the largest difference.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED = os.path.join(REPO, "tests", "data", "bitwise_outputs.npz")
THREADS = 1

#: (case name, image, (y0, x0, h, w) LR crop, extra adapt_and_upscale arguments)
CASES = [
    ("baby", "baby.png", (100, 90, 40, 40), {}),
    ("bird", "bird.png", (50, 40, 40, 36), {}),
    ("butterfly", "butterfly.png", (40, 44, 36, 40), {}),
    ("head", "head.png", (50, 50, 40, 40), {}),
    ("woman", "woman.png", (60, 40, 40, 40), {}),
    # 3 x 3 adaptation tiles, 3 x 3 (reference) or 2 x 2 (cpu) upscale tiles
    ("baby_tiled", "baby.png", (60, 60, 48, 48), {"max_memory": 37_000_000}),
    ("bird_crops", "bird.png", (20, 20, 48, 48), {"adapt_on": "crops", "crop_size": 20, "n_crops": 3,
                                                  "crop_seed": 3}),
    ("head_lrsearch", "head.png", (30, 30, 36, 36), {"lr_search": True}),
]
BACKENDS = ("reference", "cpu")
#: the meta-learned x2 direct start the outputs were saved with (named: the shipped default
#: became a kernel-conditioned bank, whose g^d_2.0 entry is another start; this test pins the
#: engine, not the weights)
WEIGHTS = os.path.join(REPO, "mzsr_fast", "weights", "mzsr_x2_direct.safetensors")
#: the reference backend on a CPU kind other than the saved one: outputs in [0, 1], a few ulps
OTHER_CPU_ATOL = 1e-6


def _lr(data_dir: str, fname: str, box) -> np.ndarray:
    from mzsr_fast import io

    y0, x0, h, w = box
    img = io.load_image(os.path.join(data_dir, "set5_g20", fname))
    img = np.asarray(img)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    return np.ascontiguousarray(img[y0:y0 + h, x0:x0 + w, :3], dtype=np.float32)


def compute(data_dir: str, case, backend: str):
    """(float32 output (2h, 2w, 3), info) of one case on one backend, with THREADS threads."""
    from mzsr_fast import adapt_and_upscale

    name, fname, box, extra = case
    kernel = os.path.join(data_dir, "set5_g20", "kernel.mat")
    old = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        out, info = adapt_and_upscale(_lr(data_dir, fname, box), scale=2, kernel=kernel, steps=2, weights=WEIGHTS,
                                      backend=backend, device="cpu", return_info=True, **extra)
    finally:
        torch.set_num_threads(old)
    assert out.dtype == np.float32
    return out, info


def _isa() -> str:
    try:
        from mzsr_fast import backends

        return backends.get("cpu", "cpu").describe()
    except Exception as e:  # no extension: the cpu cases then fail on their own
        return f"cpu backend unavailable: {e}"


def _machine() -> str:
    from mzsr_fast.machine import cpu_model

    return cpu_model()


@pytest.fixture(scope="module")
def saved():
    if not os.path.isfile(SAVED):
        pytest.fail(f"{SAVED} missing: regenerate it at a known-good commit with "
                    "`python tests/test_bitwise_outputs.py --write`")
    with np.load(SAVED) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bitwise_equal_to_saved(data_dir, saved, case, backend):
    out, info = compute(data_dir, case, backend)
    want = saved[f"{case[0]}/{backend}"]
    if case[0] == "baby_tiled":  # the budget must still force tiles in both phases
        t = info["tiling"]
        assert t["adapt_mode"] == "tiled" and t["adapt_tiles"] > 1 and t["upscale_tiles"] > 1, t
    if case[0] == "bird_crops":
        assert info["tiling"]["adapt_mode"] == "crops"
    assert out.shape == want.shape
    if not torch.equal(torch.from_numpy(out), torch.from_numpy(want)):
        diff = np.abs(out.astype(np.float64) - want).max()
        if backend == "reference" and _machine() != str(saved["machine"]) and diff <= OTHER_CPU_ATOL:
            # oneDNN picks its kernels per CPU kind: on another kind the reference is only
            # numerically equal (measured on an AMD EPYC against the Intel Xeon file,
            # 2026-12-05: max |diff| 1.19e-07, 1-2 ulp near 1.0); the native cpu backend
            # stayed bitwise there and is held to it
            return
        pytest.fail(f"{case[0]} on {backend}: max |diff| {diff:.3g} against the outputs saved at commit "
                    f"{saved['commit']} (saved on {saved['machine']} / {saved['cpu_isa']}; "
                    f"now {_machine()} / {_isa()}, {THREADS} thread(s))")


def _write(data_dir: str) -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "mzsr_fast"], cwd=REPO, capture_output=True,
                           text=True).stdout.strip()
    arrays = {"commit": np.array(commit + (" (mzsr_fast/ modified)" if dirty else "")),
              "machine": np.array(_machine()), "cpu_isa": np.array(_isa())}
    for case in CASES:
        for backend in BACKENDS:
            out, info = compute(data_dir, case, backend)
            arrays[f"{case[0]}/{backend}"] = out
            print(case[0], backend, out.shape, info["tiling"]["adapt_mode"], info["tiling"]["upscale_tiles"])
    os.makedirs(os.path.dirname(SAVED), exist_ok=True)
    tmp = SAVED + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, SAVED)
    print(f"wrote {SAVED} ({os.path.getsize(SAVED)} bytes) at {arrays['commit']}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_bitwise_outputs.py --write   (overwrites the saved outputs)")
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from conftest import DATA

    _write(DATA)
