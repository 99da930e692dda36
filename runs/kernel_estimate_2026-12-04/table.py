"""Markdown table of a kernel_eval JSON: python runs/kernel_estimate_2026-12-04/table.py FILE.json"""
import json, sys
r = json.load(open(sys.argv[1]))
print("| setting | n | MZSR(10) true k | estimated k | kernel=None | est - true | est - None | kernel err | t_est / t_adapt (mean, max) | t_est mean (s) |")
print("|---|---|---|---|---|---|---|---|---|---|")
for st, m in r["settings"].items():
    print(f"| {st} | {m['n']} | {m['psnr_true']:.2f} | {m['psnr_est']:.2f} | {m['psnr_none']:.2f} | {m['est_minus_true']:+.2f} | "
          f"{m['est_minus_none']:+.2f} | {m['kernel_err']:.3f} | {m['time_ratio']:.2f}x, {m['max_time_ratio']:.2f}x | {m['t_est']:.1f} |")
