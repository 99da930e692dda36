"""Means over the five Set5 images of the two report_vs_zssr.py processes of 2026-12-05 (bird,
butterfly, head, woman in ``vs_zssr_gd_2.0_2026-12-05.json``; baby in ``baby/`` on the other core,
started once the CI run had finished).  Every image's MZSR and ZSSR were measured in the same
process.  ``python runs/vs_zssr_2026-12-05/merge.py > runs/vs_zssr_2026-12-05/merged.md``"""
import json
from pathlib import Path

import numpy as np

D = Path(__file__).parent
rows = []
for f in (D / "vs_zssr_gd_2.0_2026-12-05.json", D / "baby" / "vs_zssr_gd_2.0_2026-12-05.json"):
    if f.is_file():
        rows += json.loads(f.read_text())["rows"]
seen = {}
for r in rows:  # one row per image (the first process is stopped before baby)
    seen.setdefault(r["image"], r)
rows = list(seen.values())
print(f"# MZSR (bank default) vs ZSSR, Set5 g^d_2.0 x2: {len(rows)} images ({', '.join(seen)})\n")
print("| method | PSNR (dB) | SSIM | seconds / image |\n|---|---|---|---|")
mean = {}
for m in ("bicubic", "mzsr1", "mzsr10", "quality_fast", "quality_balanced", "quality_best", "zssr"):
    v = [r["methods"][m] for r in rows if m in r["methods"]]
    mean[m] = {k: float(np.mean([x[k] for x in v])) for k in ("psnr", "ssim", "seconds")}
    print(f"| {m} | {mean[m]['psnr']:.2f} | {mean[m]['ssim']:.4f} | {mean[m]['seconds']:.3f} |")
b, z = mean["quality_best"], mean["zssr"]
print(f"\nquality=\"best\" - ZSSR: {b['psnr'] - z['psnr']:+.2f} dB in 1/{z['seconds'] / b['seconds']:.0f} of its time; "
      f"MZSR(10) - ZSSR: {mean['mzsr10']['psnr'] - z['psnr']:+.2f} dB in 1/{z['seconds'] / mean['mzsr10']['seconds']:.0f}.")
