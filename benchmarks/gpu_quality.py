"""Quality and latency of every GPU backend on Set5 g^d_2.0 (official LR + kernel):
MZSR(k) PSNR/SSIM per backend and precision, and the median wall time of the whole
``adapt_and_upscale`` call (warm, synchronised), next to the cuDNN reference.

    python benchmarks/gpu_quality.py --out quality.json [--steps 10] [--repeat 7]

Data: ``$MZSR_FAST_DATA`` (default ``../shared/data``) with ``set5/`` and ``set5_g20/``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

from mzsr_fast import adapt_and_upscale, backends
from mzsr_fast.benchutil import default_data_dir, machine_info, set5_g20
from mzsr_fast.metrics import psnr_y, ssim_y

def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--weights", default=os.environ.get("MZSR_QUALITY_WEIGHTS") or None,
                    help="safetensors weights (default: the shipped x2 direct ones)")
    ap.add_argument("--data", default=default_data_dir())
    a = ap.parse_args()
    dev = "cuda"
    torch.backends.cudnn.benchmark = True
    k, imgs = set5_g20(a.data)
    configs = [("reference", "tf32"), ("reference", "fp32")]
    for name, (ok, why) in backends.available(dev).items():
        if name != "reference":
            if not ok:
                print(f"backend {name}: unavailable ({why})", flush=True)
                continue
            configs += [(name, p) for p in backends._load(name).precisions]
            if name == "cuda":  # conv kernel variants 2 and 3 (MZSR_FAST_CUDA_VARIANT; one backend per value)
                configs += [(name, "bf16", "2"), (name, "bf16", "3")]
    results = {"machine": machine_info(), "steps": a.steps, "weights": a.weights or "shipped default", "setting": "g^d_2.0 (official set5_g20 LR)", "rows": []}
    for name, prec, *variant in configs:
        variant = variant[0] if variant else "0"
        os.environ["MZSR_FAST_CUDA_VARIANT"] = variant
        row = {"backend": name, "precision": prec, "images": {}}
        if variant != "0":
            row["cuda_variant"] = variant
        try:
            for n, (lr, hr) in imgs.items():
                x = torch.from_numpy(lr.copy()).permute(2, 0, 1).float().div(255).to(dev)
                run = lambda: adapt_and_upscale(x, kernel=k, steps=a.steps, backend=name, device=dev,  # noqa: E731
                                                precision=prec, weights=a.weights)
                run()  # warm-up: autotuning, graph capture, cudnn.benchmark
                times = []
                for _ in range(a.repeat):
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                    sr = run()
                    torch.cuda.synchronize()
                    times.append(time.perf_counter() - t)
                srn = (sr.clamp(0, 1) * 255 + 0.5).floor().byte().permute(1, 2, 0).cpu().numpy()
                row["images"][n] = {"lr_shape": list(lr.shape[:2]), "psnr": psnr_y(srn, hr, 2),
                                    "ssim": ssim_y(srn, hr, 2), "median_s": statistics.median(times),
                                    "min_s": min(times)}
        except Exception as e:  # keep going: report the failure, check the others
            row["error"] = f"{type(e).__name__}: {e}"
            print(f"{name}/{prec}: FAILED {row['error']}", flush=True)
        if row["images"]:
            row["mean_psnr"] = float(np.mean([v["psnr"] for v in row["images"].values()]))
            row["mean_ssim"] = float(np.mean([v["ssim"] for v in row["images"].values()]))
        results["rows"].append(row)
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)
    base = next((r for r in results["rows"] if r["backend"] == "reference" and r["precision"] == "tf32"), None)
    print(f"\nMZSR({a.steps}) on Set5 g^d_2.0, {results['machine'].get('gpu')}: mean PSNR, baby (256^2 LR) median latency")
    for r in results["rows"]:
        if "mean_psnr" not in r:
            print(f"  {r['backend']:>9}/{r['precision']:<5} ERROR {r.get('error')} {r.get('cuda_variant', '')}")
            continue
        t = r["images"].get("baby.png", {}).get("median_s", float("nan"))
        sp = base["images"]["baby.png"]["median_s"] / t if base and "baby.png" in base.get("images", {}) else float("nan")
        d = r["mean_psnr"] - base["mean_psnr"] if base and "mean_psnr" in base else float("nan")
        tag = f"{r['precision']}:{r['cuda_variant']}" if "cuda_variant" in r else r["precision"]
        print(f"  {r['backend']:>9}/{tag:<7} PSNR {r['mean_psnr']:.3f} dB (d {d:+.3f})  baby {t * 1e3:8.2f} ms  "
              f"speed-up vs reference/tf32 {sp:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
