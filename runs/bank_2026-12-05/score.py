"""Score weights files and banks on the campaign suite (Set5 + Set14 x g^d_0.2 / g^d_2.0 /
g^d_ani, MZSR(1) and MZSR(10), cpu backend, 1 thread), or on a subset of cells:

    OMP_NUM_THREADS=1 .venv/bin/python runs/bank_2026-12-05/score.py [--suite set5:g20] FILE...
A bank picks its entry per cell from the cell's kernel (mzsr_fast.bank).
"""
import argparse
import hashlib
import json
import time
from pathlib import Path

import torch

from mzsr_fast.train.validate import DEFAULT_SUITE, load_suite, validate_suite

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
ap = argparse.ArgumentParser()
ap.add_argument("files", nargs="+")
ap.add_argument("--suite", default=DEFAULT_SUITE)
ap.add_argument("--steps", default="1,10")
ap.add_argument("--json", default=None, help="append one JSON line per file here")
a = ap.parse_args()
steps = tuple(int(s) for s in a.steps.split(","))
suite = load_suite(a.suite, ROOT.parent / "shared" / "data")
for f in a.files:
    t0 = time.perf_counter()
    r = validate_suite(str(Path(f).resolve()), suite, steps, backend="cpu", device="cpu")
    sha = hashlib.sha256(Path(f).read_bytes()).hexdigest()[:16]
    cells = "  ".join(f"{n}=" + "/".join(f"{c[f'psnr_{s}']:.2f}" for s in steps) for n, c in r["cells"].items())
    means = "/".join(f"{r[f'psnr_{s}']:.3f}" for s in steps)
    print(f"{Path(f).name:32s} sha {sha} mean {means} sum {sum(r[f'psnr_{s}'] for s in steps):.3f}  {cells}  "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    if a.json:
        with open(a.json, "a") as fh:
            fh.write(json.dumps({"file": str(f), "sha256_16": sha, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                 **{k: v for k, v in r.items() if k != "val_time"}}) + "\n")
