"""Bank vs meta-learned start on kernels that are NOT the paper's test settings: Set5, direct x2,
Gaussian kernels spread over (and on the edges of) the bank's regions; MZSR(1) and MZSR(10),
cpu backend, 1 thread.  Shows what a user with another kernel gets, not only the three cells.

    OMP_NUM_THREADS=1 .venv/bin/python runs/bank_2026-12-05/heldout.py BANK [OTHER...] > heldout.log
"""
import sys
import time
from pathlib import Path

import torch

from mzsr_fast import bank
from mzsr_fast.degradation import degrade, gaussian_kernel
from mzsr_fast.kernel_eval import load_hr
from mzsr_fast.train.validate import ValSet, validate

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
KERNELS = {  # name: gaussian_kernel args (size, var1, var2, theta)
    "iso0.5": (21, 0.5, 0.5, 0.0), "narrow_ani(0.9,0.3)": (15, 0.9, 0.3, 1.0),
    "iso1.2": (21, 1.2, 1.2, 0.0), "iso1.5(edge)": (21, 1.5, 1.5, 0.0), "iso1.7": (21, 1.7, 1.7, 0.0),
    "iso2.25(edge)": (21, 2.25, 2.25, 0.0), "iso2.8": (21, 2.8, 2.8, 0.0), "iso4.0": (21, 4.0, 4.0, 0.0),
    "near_iso(2.2,1.8)": (15, 2.2, 1.8, 0.3), "ani(3,1.5,1.0)": (15, 3.0, 1.5, 1.0), "ani(5,2,2.5)": (15, 5.0, 2.0, 2.5),
    "ani(2,0.6,0.4)": (15, 2.0, 0.6, 0.4),
}
hrs = list(load_hr(ROOT.parent / "shared/data/set5", 2, None))
files = sys.argv[1:]
print("kernel".ljust(22) + "".join(f"{Path(f).name[:26]:>28s}" for f in files) + "   entry")
for name, args in KERNELS.items():
    k = gaussian_kernel(*args)
    vs = ValSet([(s, degrade(hr, k, 2, "direct"), hr) for s, hr in hrs], k, 2, "direct", name)
    row = []
    for f in files:
        r = validate(str(Path(f).resolve()), vs, (1, 10), backend="cpu", device="cpu")
        row.append(f"{r['psnr_1']:.2f}/{r['psnr_10']:.2f}")
    try:
        entry = bank.load_bank(files[0]).select(k).name
    except ValueError:
        entry = "-"
    m = bank.kernel_moments(k)
    print(f"{name:22s}" + "".join(f"{c:>28s}" for c in row) + f"   {entry} (lam {m['lam1']:.2f},{m['lam2']:.2f})", flush=True)
