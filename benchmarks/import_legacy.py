"""One-off import (2026-12-04) of the measurements made before the results tables existed,
so that nothing measured is lost: the H100 runs' JSONs (benchmarks/results/gpu_20261126_h100*)
into ``h100.csv``; the numbers that source comments quoted (csrc/cpu, the 2-core AMD EPYC
Zen 4 dev VM of 2026-11-26), bench_cpu.py's interleaved whole-call runs on that VM (with
their PSNR and peak-RSS side measurements) and bench_large.py's memory calibration into
``cpu-amd-epyc-2c.csv``; the CUDA op count prep.py quoted into ``h100.csv``.  Each row's
``source`` names the file it came from; rows already in a table are not added again.

    python -m benchmarks.import_legacy
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys

from benchmarks import harness as H

GPU_DIRS = ["gpu_20261126_h100", "gpu_20261126_h100_recheck", "gpu_20261126_h100_fix", "gpu_20261126_h100_s2"]
#: old provider names -> the harness's
_RENAME = {"cudnn_tf32": "reference_tf32", "cudnn_fp32": "reference_fp32"}


def _row(date, commit, bench, prov, size, med, lo, hi, unit, source):
    f = H._fmt
    return dict(date=date, commit=commit, benchmark=bench, provider=_RENAME.get(prov, prov), size=str(size),
                median=f(med), min=f(lo), max=f(hi), unit=unit, source=source)


def from_pytest_json(path: str) -> list[dict]:
    """bench_adapt.py / bench_cuda_ops.py pytest-benchmark JSON -> rows."""
    d = json.load(open(path))
    date = d["datetime"][:16].replace("T", " ")
    commit = (d.get("commit_info") or {}).get("id", "unknown")[:10] or "unknown"
    src = os.path.relpath(path, H.ROOT)
    out = []
    for b in d["benchmarks"]:
        e, s = b["extra_info"], b["stats"]
        name = b["name"]
        if name.startswith("test_step["):
            out.append(_row(date, commit, "ops/step", e["provider"], e["size"], s["median"], s["min"], s["max"], "s",
                            src))
        elif name.startswith("test_adapt_and_upscale["):
            out.append(_row(date, commit, f"e2e/adapt_and_upscale_steps{e['steps']}", e["provider"], e["size"],
                            s["median"], s["min"], s["max"], "s", src + " (not interleaved)"))
        elif name.startswith("test_conv3x3_op["):
            reps = 10  # bench_cuda_ops.py timed 10 back-to-back calls per round
            out.append(_row(date, commit, f"ops/conv3x3_{e['op']}_{e['cin']}to{e['cout']}", e["provider"], e["size"],
                            s["median"] / reps, s["min"] / reps, s["max"] / reps, "s", src))
    return out


def from_ratio_json(path: str) -> list[dict]:
    """ratio_whole.py (interleaved whole call on Set5 baby) -> rows; prep graph off is the
    provider suffix ``+noprepgraph``, cuda kernel variants ``:2`` / ``:3``."""
    d = json.load(open(path))
    src = os.path.relpath(path, H.ROOT) + " (interleaved)"
    out = []
    for key, v in d["summary"].items():
        name, prec, graph, *var = key.split("/")
        prov = (f"{name}_{prec}" + (f":{var[0]}" if var and var[0] != "0" else "")
                + ("" if graph == "1" else "+noprepgraph"))
        out.append(_row(d["date_utc"], "unknown", f"e2e/adapt_and_upscale_steps{d['steps']}", prov,
                        d["image"].removesuffix(".png"), v["median_ms"] / 1e3, v["min_ms"] / 1e3, v["max_ms"] / 1e3,
                        "s", src))
    return out


def from_quality_json(path: str) -> list[dict]:
    """gpu_quality.py (Set5 official g^d_2.0 LR, MZSR(k)) -> PSNR / SSIM rows, and baby's latency."""
    d = json.load(open(path))
    src = os.path.relpath(path, H.ROOT)
    date = d["machine"]["date_utc"]
    bench = f"quality/mzsr{d['steps']}_g^d_2.0"
    out = []
    for r in d["rows"]:
        if "mean_psnr" not in r:
            continue
        prov = f"{r['backend']}_{r['precision']}" + (f":{r['cuda_variant']}" if r.get("cuda_variant") else "")
        n = len(r["images"])
        size = "set5-official-lr" if n == 5 else f"{n}-of-set5-official-lr"
        out.append(_row(date, "unknown", bench + "/psnr_y", prov, size, r["mean_psnr"], r["mean_psnr"], r["mean_psnr"],
                        "dB", src))
        out.append(_row(date, "unknown", bench + "/ssim_y", prov, size, r["mean_ssim"], r["mean_ssim"], r["mean_ssim"],
                        "1", src))
        b = r["images"].get("baby.png")
        if b:
            out.append(_row(date, "unknown", bench + "/latency", prov, "baby", b["median_s"], b["min_s"], b["median_s"],
                            "s", src + " (max not recorded: the median repeated)"))
    return out


#: bench_cpu.py's interleaved whole-call providers -> the harness's
_CPU_PROVIDERS = {"cpu": "cpu_fp32", "cpu_bf16": "cpu_bf16", "cpu_direct": "cpu_fp32:direct",
                  "module_sgd": "module_sgd_fp32", "module_sgd_cl": "module_sgd_fp32+channels_last",
                  "reference": "reference_fp32", "reference_channels_last": "reference_fp32+channels_last"}


#: the interleaved run's ``psnr_y_baby`` / ``set5_g20_psnr_fp32_vs_bf16`` keys -> providers
_PREC_PROVIDERS = {"fp32": "cpu_fp32", "bf16": "cpu_bf16", "reference": "reference_fp32"}


def from_cpu_interleaved(path: str) -> list[dict]:
    """bench_cpu.py's interleaved runs (adapt_and_upscale(steps=10) on Set5 baby, round-robin)
    on the 2-core AMD EPYC VM -> rows (median / min / max over the rounds' wall seconds).
    ``cpu_fp32:direct``: Winograd off (the direct kernels only).  The same runs' side
    measurements: Y-PSNR of each provider's output (``.../psnr_y``, dB), peak RSS above the
    start of the call in a fresh process (``.../peak_rss_above_start``, MiB), and the
    interleaved run's Set5 fp32-vs-bf16 PSNR check (``quality/mzsr10_g^d_2.0/psnr_y``)."""
    d = json.load(open(path))
    runs = [d[k] for k in ("one_thread", "two_threads") if k in d] or [d]
    e2e = "e2e/adapt_and_upscale_steps10"
    out = []
    for r in runs:
        m = r.get("machine")
        date = m["date_utc"] if isinstance(m, dict) else r["date_utc"][:16]
        src = f"{os.path.relpath(path, H.ROOT)} (interleaved, {r['threads']} thread(s))"
        for prov, ws in r["wall_s"].items():
            ws = sorted(ws)
            out.append(_row(date, "unknown", e2e, _CPU_PROVIDERS[prov], "baby", ws[len(ws) // 2], ws[0], ws[-1], "s",
                            src))
        psnr = {_CPU_PROVIDERS[k]: v for k, v in (r.get("psnr_y") or {}).items()}
        psnr.update({_PREC_PROVIDERS[k]: v for k, v in (r.get("psnr_y_baby") or {}).items()})
        for prov, v in psnr.items():
            out.append(_row(date, "unknown", e2e + "/psnr_y", prov, "baby", v, v, v, "dB", src))
        rss = {_CPU_PROVIDERS[k]: v["peak_rss_above_start_mib"] for k, v in (r.get("peak_rss_mib") or {}).items()}
        rss.update({_CPU_PROVIDERS[k]: v for k, v in (r.get("peak_rss_above_start_mib") or {}).items()})
        for prov, v in rss.items():
            out.append(_row(date, "unknown", e2e + "/peak_rss_above_start", prov, "baby", v, v, v, "MiB",
                            src + ", each provider in a fresh process"))
        s5 = r.get("set5_g20_psnr_fp32_vs_bf16")
        if s5:
            qsrc = f"{os.path.relpath(path, H.ROOT)} (set5_g20_psnr_fp32_vs_bf16; weights {s5['weights']})"
            for k in ("fp32", "bf16"):
                v = sum(s5[k]) / len(s5[k])
                out.append(_row(date, "unknown", "quality/mzsr10_g^d_2.0/psnr_y", _PREC_PROVIDERS[k],
                                "set5-official-lr", v, min(s5[k]), max(s5[k]), "dB", qsrc + ", mean over the 5 images"))
            v = s5["max_abs_diff_db"]
            out.append(_row(date, "unknown", "quality/mzsr10_g^d_2.0/psnr_y_max_abs_diff_vs_fp32", "cpu_bf16",
                            "set5-official-lr", v, v, v, "dB", qsrc + ", per image"))
    return out


def from_memory_calibration(path: str, date: str, source: str) -> list[dict]:
    """bench_large.py --calibrate fits (peak RSS above the op's start at 384^2 and 768^2, a
    line per backend and kind) -> rows ``memory/<kind>_bytes_per_pixel`` (B/px) and
    ``memory/<kind>_const`` (B): the figures behind mzsr_fast/plan.py's MEMORY_BYTES_PER_PIXEL."""
    d = json.load(open(path))
    out = []
    for key, f in d["fits"].items():
        backend, kind = key.split("/")
        prov = f"{backend}_fp32"
        for suffix, v, unit in (("bytes_per_pixel", f["bytes_per_pixel"], "B/px"), ("const", f["const_bytes"], "B")):
            out.append(_row(date, "unknown", f"memory/{kind}_{suffix}", prov, "384+768", v, v, v, unit, source))
    return out


#: numbers that were quoted in source comments (moved here; the comment points to the row).
#: Measured 2026-11-26 on one core of the 2-core AMD EPYC (Zen 4) dev VM, shared with other
#: jobs; single values (median = min = max) unless a range was given.
CPU_COMMENT_ROWS = [
    # csrc/cpu/conv_kernels.inc (I::CB): direct conv forward 64 -> 64 at 128^2, K channel block
    ("ops/conv3x3_fwd_64to64/k_block", "cpu_fp32:cb8", 128, 94, 94, 94, "GF/s", "csrc/cpu/conv_kernels.inc"),
    ("ops/conv3x3_fwd_64to64/k_block", "cpu_fp32:cb16", 128, 99, 99, 99, "GF/s", "csrc/cpu/conv_kernels.inc"),
    ("ops/conv3x3_fwd_64to64/k_block", "cpu_fp32:cb32", 128, 108, 108, 108, "GF/s", "csrc/cpu/conv_kernels.inc"),
    ("ops/conv3x3_fwd_64to64/k_block", "cpu_fp32:cb64", 128, 110, 110, 110, "GF/s", "csrc/cpu/conv_kernels.inc"),
    ("ops/fma_peak", "cpu_fp32:zmm", "-", 117, 117, 117, "GF/s", "csrc/cpu/cpu_ops.cpp"),
    # csrc/cpu/cpu_ops.cpp: the 64 -> 3 layer vectorised over input channels (narrow_row)
    ("ops/conv3x3_64to3_row_sweep", "cpu_fp32:narrow_row", 128, 0.8e-3, 0.8e-3, 0.8e-3, "s", "csrc/cpu/cpu_ops.cpp"),
    ("ops/conv3x3_64to3_row_sweep", "cpu_fp32:over_cout", 128, 3.1e-3, 3.1e-3, 3.1e-3, "s", "csrc/cpu/cpu_ops.cpp"),
    # csrc/cpu/cpu_ops.cpp (wino_mode): 64 -> 64 + bias + ReLU forward, and weight gradient
    ("ops/conv3x3_fwd_64to64", "cpu_fp32:direct", 128, 10.7e-3, 10.7e-3, 10.7e-3, "s", "csrc/cpu/cpu_ops.cpp"),
    ("ops/conv3x3_fwd_64to64", "cpu_fp32:winograd", 128, 5.75e-3, 5.6e-3, 5.9e-3, "s", "csrc/cpu/cpu_ops.cpp"),
    ("ops/conv3x3_fwd_64to64", "cpu_fp32:direct", 256, 42.85e-3, 42.5e-3, 43.2e-3, "s", "csrc/cpu/cpu_ops.cpp"),
    ("ops/conv3x3_fwd_64to64", "cpu_fp32:winograd", 256, 23.7e-3, 23.5e-3, 23.9e-3, "s", "csrc/cpu/cpu_ops.cpp"),
    ("ops/conv3x3_wgrad_64to64", "cpu_fp32:direct", 128, 11.1e-3, 11.0e-3, 11.2e-3, "s", "csrc/cpu/cpu_ops.cpp"),
    ("ops/conv3x3_wgrad_64to64", "cpu_fp32:winograd", 128, 6.05e-3, 6.0e-3, 6.1e-3, "s", "csrc/cpu/cpu_ops.cpp"),
    ("ops/conv3x3_wgrad_64to64", "cpu_fp32:direct", 256, 44.6e-3, 44.6e-3, 44.6e-3, "s", "csrc/cpu/cpu_ops.cpp"),
    ("ops/conv3x3_wgrad_64to64", "cpu_fp32:winograd", 256, 25.3e-3, 25.3e-3, 25.3e-3, "s", "csrc/cpu/cpu_ops.cpp"),
    ("ops/winograd_gemms", "cpu_fp32:winograd", 128, 114, 114, 114, "GF/s", "csrc/cpu/cpu_ops.cpp"),
    # csrc/cpu/conv_winograd.inc: tiles per chunk, all within noise of each other
    ("ops/conv3x3_fwd_64to64/winograd_chunk", "cpu_fp32:nt12-48", 128, 1.85, 1.8, 1.9, "x vs direct",
     "csrc/cpu/conv_winograd.inc"),
    ("ops/winograd_transforms/scratch_stride", "cpu_fp32:pow2_stride_nt32", 128, 1.5, 1.5, 1.5, "x slower",
     "csrc/cpu/conv_winograd.inc"),
    # mzsr_fast/backends/cpu.py module docstring: one core, thread CPU time (the micro-benchmark
    # itself was not committed, commit ff6f0d7); the fp32 forward's 110 GF/s is cb64 above
    ("ops/conv3x3_wgrad_64to64/gflops", "cpu_fp32:direct", 128, 107, 107, 107, "GF/s", "mzsr_fast/backends/cpu.py"),
    ("ops/conv3x3_fwd_64to64/gflops", "cpu_bf16", 128, 211, 211, 211, "GF/s", "mzsr_fast/backends/cpu.py"),
    ("ops/conv3x3_wgrad_64to64/gflops", "cpu_bf16", 128, 198, 198, 198, "GF/s", "mzsr_fast/backends/cpu.py"),
    ("ops/bf16_dot_peak", "cpu_bf16:vdpbf16ps", "-", 235, 235, 235, "GF/s", "mzsr_fast/backends/cpu.py"),
    ("ops/step/gflops", "cpu_fp32:direct", 128, 107, 107, 107, "GF/s", "mzsr_fast/backends/cpu.py"),
    ("ops/step/gflops", "cpu_bf16", 128, 192, 192, 192, "GF/s", "mzsr_fast/backends/cpu.py"),
    # mzsr_fast/plan.py: the first memory calibration (the fits of
    # benchmarks/results/large_calib_ops_2026-11-26.json as committed in b28a79c; the file
    # now holds the rerun of aa121a4, imported by from_memory_calibration)
    ("memory/forward_bytes_per_pixel", "reference_fp32", "384+768", 767.8, 767.8, 767.8, "B/px", "mzsr_fast/plan.py"),
    ("memory/adapt_bytes_per_pixel", "reference_fp32", "384+768", 2595.4, 2595.4, 2595.4, "B/px", "mzsr_fast/plan.py"),
    ("memory/region_grads_bytes_per_pixel", "reference_fp32", "384+768", 2635.6, 2635.6, 2635.6, "B/px",
     "mzsr_fast/plan.py"),
    ("memory/forward_bytes_per_pixel", "cpu_fp32", "384+768", 550.3, 550.3, 550.3, "B/px", "mzsr_fast/plan.py"),
    ("memory/adapt_bytes_per_pixel", "cpu_fp32", "384+768", 1898.3, 1898.3, 1898.3, "B/px", "mzsr_fast/plan.py"),
    ("memory/region_grads_bytes_per_pixel", "cpu_fp32", "384+768", 2421.1, 2421.1, 2421.1, "B/px", "mzsr_fast/plan.py"),
    # mzsr_fast/kernels/conv3x3.py (INTERP): one triton backend step under the interpreter, CPU seconds
    ("ops/step_triton_interpreter", "triton_fp32:bk32", "-", 4.4, 4.4, 4.4, "s", "mzsr_fast/kernels/conv3x3.py"),
    ("ops/step_triton_interpreter", "triton_fp32:bk1024", "-", 1.6, 1.6, 1.6, "s", "mzsr_fast/kernels/conv3x3.py"),
]


def cpu_comment_rows() -> list[dict]:
    return [_row("2026-11-26", "unknown", b, p, s, m, lo, hi, u, f"{src} comment (moved to this table)")
            for b, p, s, m, lo, hi, u, src in CPU_COMMENT_ROWS]


#: numbers quoted in source comments about CUDA runs: (date, benchmark, provider, size,
#: value, unit, source)
GPU_COMMENT_ROWS = [
    # mzsr_fast/prep.py: aten ops dispatched by degrade + the two imresize of one call with
    # CUDA tensors (the count behind its CUDA graph; commit d6b87e7, during the H100 session)
    ("2026-11-26 11:23", "prep/dispatched_ops", "reference_fp32", "3ch-k21", 119, "ops",
     "mzsr_fast/prep.py comment (moved to this table; counted, machine not recorded)"),
]


def gpu_comment_rows() -> list[dict]:
    return [_row(date, "unknown", b, p, s, v, v, v, u, src) for date, b, p, s, v, u, src in GPU_COMMENT_ROWS]


def legacy_rows(res: str = H.RESULTS) -> dict[str, list[dict]]:
    """Every legacy row, by the table it belongs in: ``{csv path: rows}``."""
    gpu = []
    for d in GPU_DIRS:
        for f in sorted(glob.glob(os.path.join(res, d, "*.json"))):
            base = os.path.basename(f)
            if re.match(r"bench_.*\.json$", base):
                gpu += from_pytest_json(f)
            elif base.startswith("ratio"):
                gpu += from_ratio_json(f)
            elif base == "quality.json":
                gpu += from_quality_json(f)
    gpu += gpu_comment_rows()
    cpu = cpu_comment_rows()
    for f in ("cpu_2026-11-26_interleaved.json", "cpu_winograd_2026-11-26.json", "cpu_final_2026-11-26.json"):
        cpu += from_cpu_interleaved(os.path.join(res, f))
    calib = os.path.join(res, "large_calib_ops_2026-11-26.json")
    cpu += from_memory_calibration(calib, json.load(open(calib))["machine"]["date_utc"],
                                   os.path.relpath(calib, H.ROOT) + " (fits; bench_large.py --calibrate, 2 threads)")
    return {os.path.join(res, "h100.csv"): gpu, os.path.join(res, "cpu-amd-epyc-2c.csv"): cpu}


def row_key(r: dict) -> tuple:
    """What identifies an imported row (a second import of the same row adds nothing)."""
    return (r["date"], r["benchmark"], r["provider"], str(r["size"]), r["source"])


def missing_rows(path: str, rows: list[dict]) -> list[dict]:
    have = {row_key(r) for r in H.read_rows(path)} if os.path.exists(path) else set()
    return [r for r in rows if row_key(r) not in have]


def main() -> int:
    for path, rows in legacy_rows().items():
        new = missing_rows(path, rows)  # idempotent: a second run adds nothing
        H.append_rows(path, new)
        print(f"{path}: {len(new)} rows added ({len(rows) - len(new)} already there)")
    return 0

if __name__ == "__main__":
    sys.exit(main())
