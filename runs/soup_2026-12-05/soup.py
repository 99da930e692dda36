"""Weight averages ("soups") of the x2 direct snapshots we have, scored on the campaign's suite
(Set5 + Set14 x g^d_0.2 / g^d_2.0 / g^d_ani, MZSR(1) and MZSR(10), cpu backend), with the
shipped file in the same run.  Does averaging iterates help?  If so, --ema is worth running.

    OMP_NUM_THREADS=1 .venv/bin/python runs/soup_2026-12-05/soup.py > runs/soup_2026-12-05/soup.log
"""
import hashlib
import json
import sys
from pathlib import Path

import torch

from mzsr_fast import model
from mzsr_fast.train.validate import DEFAULT_SUITE, load_suite, validate_suite

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]
FILES = {
    "shipped": ROOT / "mzsr_fast/weights/mzsr_x2_direct.safetensors",
    "x2d_1200": ROOT / "runs/campaign_x2d/best.safetensors",
    "x2d_1359": ROOT / "runs/campaign_x2d/last.safetensors",
    "k5_200": ROOT / "runs/campaign_x2d_k5/best.safetensors",
    "k5_531": ROOT / "runs/campaign_x2d_k5/last.safetensors",
}
SOUPS = {
    "shipped": ["shipped"],
    "x2d_1200": ["x2d_1200"],
    "shipped+x2d_1200": ["shipped", "x2d_1200"],
    "x2d_1200+x2d_1359": ["x2d_1200", "x2d_1359"],
    "shipped+x2d_1200+x2d_1359": ["shipped", "x2d_1200", "x2d_1359"],
    "all five": list(FILES),
}
names = sys.argv[1:] or list(SOUPS)
w = {k: model.load_weights(p)[0] for k, p in FILES.items()}
for k, p in FILES.items():
    print(f"# {k}: {p.relative_to(ROOT)} sha256 {hashlib.sha256(p.read_bytes()).hexdigest()[:16]}", flush=True)
suite = load_suite(DEFAULT_SUITE, ROOT.parent / "shared" / "data")
out = {}
for name in names:
    parts = SOUPS[name]
    params = {k: sum(w[s][k] for s in parts) / len(parts) for k in w["shipped"]}
    r = validate_suite(params, suite, (1, 10), device="cpu", backend="cpu")
    out[name] = r
    cells = " ".join(f"{c}={v['psnr_1']:.2f}/{v['psnr_10']:.2f}" for c, v in r["cells"].items())
    print(f"{name:28s} mean {r['psnr_1']:.3f}/{r['psnr_10']:.3f} sum {r['psnr_1'] + r['psnr_10']:.3f}  {cells}  "
          f"({r['val_time']:.0f} s)", flush=True)
(Path(__file__).parent / "soup.json").write_text(json.dumps(out, indent=1))
