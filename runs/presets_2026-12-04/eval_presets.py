"""Set5 / Set14 Y-PSNR of the quality presets against plain MZSR(1) / MZSR(10), shipped x2 direct
weights, cpu backend, 1 thread (validation sets: measured after the presets were chosen on training
images, runs/test_time_2026-12-04).  Usage: python eval_presets.py OUT.json [set:setting ...]"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from mzsr_fast import adapt_and_upscale, metrics
from mzsr_fast.train.validate import load_valset

out = sys.argv[1]
cells = sys.argv[2:] or ["set5:g20", "set5:g02", "set5:gani", "set14:g20"]
methods = {"MZSR(1)": dict(steps=1), "MZSR(10)": dict(steps=10), "fast": dict(quality="fast"),
           "balanced": dict(quality="balanced"), "best": dict(quality="best")}
res = {}
for cell in cells:
    name, setting = cell.split(":")
    vs = load_valset(f"/work/shared/data/{name}", setting, 2)
    r = res[cell] = {m: {"psnr": [], "time": []} for m in methods}
    for img, lr, hr in vs.items:
        for m, kw in methods.items():
            t0 = time.perf_counter()
            sr = adapt_and_upscale(lr, scale=2, kernel=vs.kernel, subsampling=vs.subsampling, backend="cpu",
                                   device="cpu", **kw)
            r[m]["time"].append(time.perf_counter() - t0)
            r[m]["psnr"].append(float(metrics.psnr_y(sr, hr, 2)))
        print(cell, img, {m: round(v["psnr"][-1], 2) for m, v in r.items()}, flush=True)
    print(cell, "MEAN", {m: (round(float(np.mean(v["psnr"])), 3), round(float(np.mean(v["time"])), 2)) for m, v in r.items()}, flush=True)
    json.dump(res, open(out, "w"), indent=1)
