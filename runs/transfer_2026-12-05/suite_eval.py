"""Score weight files on the campaign suite (Set5 + Set14 x g^d_0.2 / g^d_2.0 / g^d_ani, MZSR(1)/(10),
cpu backend, 1 thread): `python runs/transfer_2026-12-05/suite_eval.py FILE...`"""
import hashlib
import sys
from pathlib import Path

import torch

from mzsr_fast import model
from mzsr_fast.train.validate import DEFAULT_SUITE, load_suite, validate_suite

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
suite = load_suite(DEFAULT_SUITE, ROOT.parent / "shared" / "data")
for f in sys.argv[1:]:
    p, md = model.load_weights(f)
    r = validate_suite(p, suite, (1, 10), device="cpu", backend="cpu")
    cells = " ".join(f"{c}={v['psnr_1']:.2f}/{v['psnr_10']:.2f}" for c, v in r["cells"].items())
    sha = hashlib.sha256(Path(f).read_bytes()).hexdigest()[:16]
    print(f"{f} (step {md.get('steps')}, sha256 {sha}): mean {r['psnr_1']:.3f}/{r['psnr_10']:.3f} "
          f"sum {r['psnr_1'] + r['psnr_10']:.3f}  {cells}", flush=True)
