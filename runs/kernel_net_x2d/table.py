"""Markdown table of kernel_eval JSONs: python runs/kernel_net_x2d/table.py FILE.json [FILE.json ...]
(rows: set / setting; a setting without kernel=None runs shows '-')."""
import json
import sys
from pathlib import Path

print("| set | setting | n | MZSR(10) true k | estimated k | kernel=None | est - true | est - None | kernel err "
      "| t_est / t_adapt (mean, max) | t_est mean (s) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for f in sys.argv[1:]:
    r = json.loads(Path(f).read_text())
    for st, m in r["settings"].items():
        none = "-" if m["psnr_none"] is None else f"{m['psnr_none']:.2f}"
        dn = "-" if m["est_minus_none"] is None else f"{m['est_minus_none']:+.2f}"
        print(f"| {Path(f).stem} | {st} | {m['n']} | {m['psnr_true']:.2f} | {m['psnr_est']:.2f} | {none} | "
              f"{m['est_minus_true']:+.2f} | {dn} | {m['kernel_err']:.3f} | {m['time_ratio']:.2f}x, "
              f"{m['max_time_ratio']:.2f}x | {m['t_est']:.2f} |")
