"""Large images under a memory budget: peak RSS and time of ``adapt_and_upscale`` with
``max_memory``, each case in a fresh subprocess; and the calibration of the memory model.

    python -m benchmarks.bench_large --out benchmarks/results/large_DATE.json
        cases (default, the issue's): 2048x2048 LR at steps=1 and 4096x4096 LR at steps=0,
        scale 2, backend cpu, max_memory 4 GiB, 2 threads; and 2048x2048 at steps=1 with
        adapt_on="crops"
    python -m benchmarks.bench_large --calibrate --out benchmarks/results/large_calib_DATE.json
        bytes per pixel of forward / adapt / region_grads per CPU backend (two sizes, a
        line fit), and whole calls vs the planner's estimate
    python -m benchmarks.bench_large --crops-psnr --out benchmarks/results/crops_psnr_DATE.json
        PSNR cost of adapt_on="crops" vs full adaptation on Set5 + Set14 (validation sets;
        setting g^d_2.0, MZSR(10), shipped weights, cpu backend)
    pytest benchmarks/bench_large.py --benchmark-only     (skipped under --benchmark-skip)
        the same cases; MZSR_BENCH_LARGE="2048:1,4096:0" to choose them

Peak memory: in the child, ``/proc/self/clear_refs`` is written ``5`` just before the
measured call (resets VmHWM to the current RSS), then VmHWM after the call is the call's
peak RSS; ``peak_above_start`` subtracts the RSS right before the call (Python, torch and
the input image).  ``ru_maxrss`` (getrusage) is the whole child's peak, start-up included.
A sampling thread also records VmRSS every 50 ms (max and the time of the max).

Image content: a Set14 image (img_011, 768x512), bicubic-upscaled by PIL and mirror-tiled
to the size: realistic texture at any size.  Weights: the shipped default for (2, direct).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:  # benchmarks.harness when run as a script
    sys.path.insert(0, ROOT)
DATA = os.path.normpath(os.environ.get("MZSR_FAST_DATA", os.path.join(ROOT, "..", "shared", "data")))
THREADS = 2


# ----------------------------------------------------------------------------- child side
def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _Sampler(threading.Thread):
    """VmRSS every ``dt`` seconds: the max and when it happened (a second opinion on VmHWM)."""

    def __init__(self, dt: float = 0.05):
        super().__init__(daemon=True)
        self.dt, self.max, self.t_max, self.stop_ = dt, 0, 0.0, threading.Event()
        self.t0 = time.perf_counter()

    def run(self):
        while not self.stop_.is_set():
            r = _status()["VmRSS"]
            if r > self.max:
                self.max, self.t_max = r, time.perf_counter() - self.t0
            self.stop_.wait(self.dt)


def _measure(fn) -> dict:
    """Run fn() with the peak reset before it; returns the memory and time facts."""
    import resource

    ok = _reset_peak()
    start = _status()["VmRSS"]
    s = _Sampler()
    s.start()
    t = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - t
    s.stop_.set()
    s.join()
    st = _status()
    return {
        "wall_s": round(wall, 3),
        "rss_start": start,
        "peak_rss": st["VmHWM"] if ok else None,
        "peak_above_start": (st["VmHWM"] - start) if ok else None,
        "sampled_max_rss": s.max,
        "sampled_max_at_s": round(s.t_max, 2),
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "_result": result,
    }


def synthetic_image(size: int):
    """(size, size, 3) uint8: Set14 img_011 bicubic-upscaled x2 (PIL), mirror-tiled."""
    import numpy as np
    from PIL import Image

    im = Image.open(os.path.join(DATA, "set14", "img_011.png")).convert("RGB")
    im = im.resize((im.width * 2, im.height * 2), Image.BICUBIC)
    a = np.asarray(im)
    a = np.concatenate([a, a[::-1]], axis=0)
    a = np.concatenate([a, a[:, ::-1]], axis=1)
    reps = (-(-size // a.shape[0]), -(-size // a.shape[1]), 1)
    return np.ascontiguousarray(np.tile(a, reps)[:size, :size])


def _child_case(spec: dict) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    from mzsr_fast import adapt_and_upscale, gaussian_kernel
    from benchmarks.harness import machine_info

    img = synthetic_image(spec["size"])
    k = gaussian_kernel(13, 2.0)
    kw = dict(scale=spec["scale"], kernel=k, steps=spec["steps"], backend=spec["backend"], device="cpu",
              max_memory=spec["max_memory"], return_info=True, adapt_on=spec.get("adapt_on", "full"))
    # warm-up on a small image: loads the extension and libraries outside the measurement
    adapt_and_upscale(img[:24, :24], **{**kw, "max_memory": None})
    m = _measure(lambda: adapt_and_upscale(img, **kw))
    out, info = m.pop("_result")
    m.update(case=spec, out_shape=list(out.shape), tiling=info["tiling"],
             times={k2: round(v, 3) for k2, v in info["times"].items()}, losses=info["losses"],
             backend=info["backend_detail"], machine=machine_info())
    return m


def _child_calib(spec: dict) -> dict:
    """Working memory of one backend op on an (1, 3, S, S) input."""
    import torch

    torch.set_num_threads(THREADS)
    from mzsr_fast import backends, model

    be = backends.get(spec["backend"], "cpu")
    p = model.init_params(0)
    s = spec["size"]
    g = torch.Generator().manual_seed(0)
    x, t = torch.rand(1, 3, s, s, generator=g), torch.rand(1, 3, s, s, generator=g)
    kind = spec["kind"]

    def run(x, t):
        if kind == "forward":
            return be.upscale(x)
        if kind == "adapt":
            return be.adapt(x, t, [1e-3])
        return be.region_grads(x, t, (8, x.shape[2] - 8, 8, x.shape[3] - 8), t.numel())

    be.prepare(p, (1, 3, 32, 32))
    run(x[..., :32, :32].contiguous(), t[..., :32, :32].contiguous())  # warm-up
    be.prepare(p, x.shape)
    m = _measure(lambda: (run(x, t), None)[1])
    m.pop("_result")
    m.update(spec=spec, pixels=s * s)
    return m


def _child_plan(spec: dict) -> dict:
    """A whole call vs the planner's estimate of its peak (max over the phases)."""
    import torch

    torch.set_num_threads(THREADS)
    from mzsr_fast import adapt_and_upscale, gaussian_kernel

    img = synthetic_image(spec["size"])
    kw = dict(scale=2, kernel=gaussian_kernel(13, 2.0), steps=spec["steps"], backend=spec["backend"],
              device="cpu", max_memory=spec["max_memory"], return_info=True)
    adapt_and_upscale(img[:24, :24], **{**kw, "max_memory": None})
    m = _measure(lambda: adapt_and_upscale(img, **kw))
    _out, info = m.pop("_result")
    t = info["tiling"]
    m.update(spec=spec, tiling=t, estimate=max(t["adapt_bytes"], t["upscale_bytes"], t["convert_bytes"]))
    return m


def crops_psnr(configs=((64, 4), (32, 4)), steps: int = 10, setting: str = "g^d_2.0", backend: str = "cpu") -> dict:
    """Y-PSNR of MZSR(steps) with full adaptation and with crop samples (crop_size, n_crops),
    per image of Set5 and Set14 (HR cropped to a multiple of 2, degraded by ``setting``)."""
    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(THREADS)
    from mzsr_fast import adapt_and_upscale, metrics
    from benchmarks.harness import machine_info
    from mzsr_fast.degradation import degrade
    from mzsr_fast.degradation import setting as get_setting

    kernel, sub = get_setting(setting)
    rows = []
    for sname in ("set5", "set14"):
        d = os.path.join(DATA, sname)
        for f in sorted(os.listdir(d)):
            hr = np.asarray(Image.open(os.path.join(d, f)).convert("RGB"))
            hr = hr[: hr.shape[0] - hr.shape[0] % 2, : hr.shape[1] - hr.shape[1] % 2]
            lr = degrade(hr, kernel, 2, sub)
            row = {"set": sname, "image": f, "lr_hw": list(lr.shape[:2])}
            for name, kw in [("full", {})] + [(f"crops{c}x{n}", {"adapt_on": "crops", "crop_size": c, "n_crops": n})
                                               for c, n in configs]:
                sr, info = adapt_and_upscale(lr, scale=2, kernel=kernel, steps=steps, subsampling=sub, backend=backend,
                                             device="cpu", return_info=True, **kw)
                row[name] = {"psnr": round(metrics.psnr_y(sr, hr, 2), 4), "adapt_s": round(info["times"]["adapt"], 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for c, n in configs:
        key = f"crops{c}x{n}"
        d = np.array([r[key]["psnr"] - r["full"]["psnr"] for r in rows])
        frac = np.array([n * min(c, r["lr_hw"][0]) * min(c, r["lr_hw"][1]) / (r["lr_hw"][0] * r["lr_hw"][1])
                         for r in rows])
        t = np.array([r[key]["adapt_s"] / r["full"]["adapt_s"] for r in rows])
        summary[key] = {"mean_delta_db": round(float(d.mean()), 4), "min_delta_db": round(float(d.min()), 4),
                        "max_delta_db": round(float(d.max()), 4), "mean_pixel_fraction": round(float(frac.mean()), 3),
                        "mean_adapt_time_ratio": round(float(t.mean()), 3)}
    summary["full_mean_psnr"] = round(float(np.mean([r["full"]["psnr"] for r in rows])), 4)
    return {"date": time.strftime("%Y-%m-%d"), "setting": setting, "steps": steps, "backend": backend,
            "threads": THREADS, "configs": [list(c) for c in configs], "summary": summary, "rows": rows,
            "machine": machine_info()}


# ----------------------------------------------------------------------------- parent side
def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_child(what: str, spec: dict, timeout: float = 3600) -> dict:
    """Run ``what`` (case | calib | plan) with ``spec`` in a fresh interpreter."""
    cmd = [sys.executable, "-m", "benchmarks.bench_large", "--child", what, json.dumps(spec)]
    r = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        return {"spec": spec, "error": (r.stderr or r.stdout)[-2000:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def calibrate(ops: bool = True) -> dict:
    """ops: the per-op bytes per pixel (line fit at 384^2 and 768^2); always: whole calls
    under small budgets, measured peak vs the planner's estimate."""
    out = {"date": time.strftime("%Y-%m-%d"), "threads": THREADS, "ops": [], "fits": {}, "calls": []}
    for backend in ("reference", "cpu") if ops else ():
        for kind in ("forward", "adapt", "region_grads"):
            rows = []
            for size in (384, 768):
                r = run_child("calib", {"backend": backend, "kind": kind, "size": size})
                print(json.dumps({k: r.get(k) for k in ("spec", "peak_above_start", "wall_s", "error")}), flush=True)
                rows.append(r)
                out["ops"].append(r)
            if all("error" not in r for r in rows):
                (p1, d1), (p2, d2) = [(r["pixels"], r["peak_above_start"]) for r in rows]
                slope = (d2 - d1) / (p2 - p1)
                out["fits"][f"{backend}/{kind}"] = {"bytes_per_pixel": round(slope, 1),
                                                    "const_bytes": round(d1 - slope * p1)}
    for spec in ({"backend": "cpu", "size": 1024, "steps": 1, "max_memory": "1GiB"},
                 {"backend": "cpu", "size": 1024, "steps": 1, "max_memory": "3GiB"},
                 {"backend": "cpu", "size": 1536, "steps": 0, "max_memory": "1GiB"},
                 {"backend": "reference", "size": 768, "steps": 1, "max_memory": "1GiB"}):
        r = run_child("plan", spec)
        print(json.dumps({k: r.get(k) for k in ("spec", "peak_above_start", "estimate", "wall_s", "error")}),
              flush=True)
        out["calls"].append(r)
    from benchmarks.harness import machine_info

    out["machine"] = machine_info()
    return out


#: the issue's two cases, and the first with adaptation on crops (default 16 crops of 128^2)
CASES = [{"size": 2048, "steps": 1}, {"size": 4096, "steps": 0}, {"size": 2048, "steps": 1, "adapt_on": "crops"}]


def _cases_from_env() -> list[dict]:
    """MZSR_BENCH_LARGE="SIZE:STEPS[:crops],...", default :data:`CASES`."""
    v = os.environ.get("MZSR_BENCH_LARGE")
    if not v:
        return CASES
    out = []
    for item in (s.split(":") for s in v.split(",") if s.strip()):
        c = {"size": int(item[0]), "steps": int(item[1])}
        if len(item) > 2:
            c["adapt_on"] = item[2]
        out.append(c)
    return out


def run_cases(cases, max_memory: str = "4GiB", backend: str = "cpu") -> dict:
    from benchmarks.harness import machine_info

    res = {"date": time.strftime("%Y-%m-%d"), "max_memory": max_memory, "backend": backend, "threads": THREADS,
           "machine": machine_info(), "cases": []}
    for c in cases:
        spec = {"scale": 2, "backend": backend, "max_memory": max_memory, **c}
        r = run_child("case", spec)
        print(json.dumps({k: r.get(k) for k in ("case", "peak_rss", "peak_above_start", "wall_s", "tiling", "error")}),
              flush=True)
        res["cases"].append(r)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="write the results JSON here")
    ap.add_argument("--calibrate", action="store_true", help="measure the memory model instead of the cases")
    ap.add_argument("--calls-only", action="store_true", help="with --calibrate: only the whole calls")
    ap.add_argument("--crops-psnr", action="store_true", help="measure the PSNR cost of adapt_on='crops'")
    ap.add_argument("--max-memory", default="4GiB")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--child", nargs=2, metavar=("WHAT", "SPEC"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        what, spec = a.child[0], json.loads(a.child[1])
        r = {"case": _child_case, "calib": _child_calib, "plan": _child_plan}[what](spec)
        print(json.dumps(r))
        return 0
    if a.calibrate:
        res = calibrate(ops=not a.calls_only)
    elif a.crops_psnr:
        res = crops_psnr()
    else:
        res = run_cases(_cases_from_env(), a.max_memory, a.backend)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    return 0


# ----------------------------------------------------------------------------- pytest-benchmark
def test_large_images(benchmark):
    """The issue's cases under pytest-benchmark (one round each; minutes on 2 cores)."""
    res = benchmark.pedantic(lambda: run_cases(_cases_from_env()), rounds=1, iterations=1)
    benchmark.extra_info["large"] = res
    for c in res["cases"]:
        assert "error" not in c, c
        assert c["peak_above_start"] <= 4 * 2**30, c


if __name__ == "__main__":
    sys.exit(main())
