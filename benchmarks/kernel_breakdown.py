"""Per-kernel GPU time of one adaptation + upscale, per backend: where the time of
``adapt_and_upscale(steps=10)`` goes, so that one GPU run says which kernels to work on.

For each provider (cuDNN reference TF32, triton bf16/tf32, cuda bf16 with kernel variants
0, 2 and 3, cuda tf32) the backend runs eagerly (no CUDA graphs: the profiler then sees
every launch) one warm-up and one profiled ``prepare + adapt(10 steps) + upscale(2x)`` of a
random ``--size``^2 input; torch.profiler's CUDA activity gives each kernel's device time.
The JSON holds, per provider: the summed kernel time, the kernel count, time per family
(fwd / dgrad / wgrad / reduce / thin / loss / sgd / elementwise / other, from the kernel
names) and the
top kernels.  Device time only: launch gaps are what the CUDA graphs of the real path
remove, so the sum is a lower bound of the graph-replayed call.

    python benchmarks/kernel_breakdown.py --out breakdown.json [--size 256] [--steps 10]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

#: kernel-name patterns of the families, tried in order (names of the CUDA kernels in
#: csrc/cuda, the Triton kernels in mzsr_fast/kernels, and cuDNN / ATen's)
FAMILIES = (
    ("reduce", r"wgrad_reduce|reduce_sgd|bgrad_partial"),
    ("wgrad", r"wgrad|wgrad_partial|dgrad_filter|wgrad_engine|_bwd_filter|weight_grad"),
    ("dgrad", r"dgrad|_bwd_data|dgrad_engine|convolve_dgrad"),
    # the 3-channel layers' kernels of variants 2/3 (forward of the first and last layer,
    # input gradient of the last)
    ("thin", r"thin_out|thin_in"),
    ("fwd", r"conv3x3_fwd|_fwd_|fprop|implicit_gemm|conv2d|xmma_fprop|convolve_"),
    ("loss", r"l1_loss|sign|abs|mean"),
    ("sgd", r"sgd|foreach|_amp_update|add_"),
    ("elementwise", r"pack|transpose|permute|copy|nchw|nhwc|elementwise_kernel"),
)


def family(name: str) -> str:
    """The family of a kernel by its name (``"other"`` if no pattern matches)."""
    low = name.lower()
    for fam, pat in FAMILIES:
        if re.search(pat, low):
            return fam
    return "other"


def summarize(rows, top: int = 15) -> dict:
    """rows: (kernel name, total device µs, launches) -> {total_us, launches, families
    {family: µs}, top [{name, us, launches, mean_us, family}]} (sorted by time)."""
    rows = [(str(n), float(us), int(c)) for n, us, c in rows if float(us) > 0]
    rows.sort(key=lambda r: -r[1])
    fam: dict[str, float] = {}
    for n, us, _ in rows:
        fam[family(n)] = fam.get(family(n), 0.0) + us
    return {
        "total_us": round(sum(r[1] for r in rows), 1),
        "launches": sum(r[2] for r in rows),
        "families": {k: round(v, 1) for k, v in sorted(fam.items(), key=lambda kv: -kv[1])},
        "top": [{"name": n[:160], "us": round(us, 1), "launches": c, "mean_us": round(us / max(c, 1), 2),
                 "family": family(n)} for n, us, c in rows[:top]],
    }


def _on_device(evt) -> bool:
    """Whether a key_averages() entry is a device activity (a kernel, memcpy or memset), not
    a CPU op whose device time would count its kernels a second time."""
    dt = getattr(evt, "device_type", None)
    return dt is None or str(dt).endswith("CUDA")


def _device_us(evt) -> float:
    for attr in ("device_time_total", "cuda_time_total", "self_device_time_total", "self_cuda_time_total"):
        v = getattr(evt, attr, None)
        if v:
            return float(v)
    return 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args(argv)
    import torch
    from torch.profiler import ProfilerActivity, profile

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run as a script
    from benchmarks.harness import gpu_adapt_case, machine_info
    from mzsr_fast import backends

    case = gpu_adapt_case(a.size, a.steps)
    if case is None:
        return 2
    dev, params, x, t, up, sched = case
    s = a.size
    avail = backends.available(dev)
    # (backend, precision, cuda kernel variant); triton last: its autotuning (per process)
    # takes the longest, and the JSON is rewritten after every provider
    providers = [("cuda", "bf16", "0"), ("cuda", "bf16", "2"), ("cuda", "bf16", "3"), ("cuda", "tf32", "0"),
                 ("reference", "tf32", "0"), ("triton", "bf16", "0"), ("triton", "tf32", "0")]

    def save():
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)

    out = {"machine": machine_info(), "size": s, "steps": a.steps,
           "what": "device time of the kernels of one eager prepare + adapt + 2x upscale (no CUDA graphs)",
           "providers": {}}
    for name, prec, variant in providers:
        key = f"{name}/{prec}" + (f"/{variant}" if name == "cuda" else "")
        ok, why = avail.get(name, (False, "unknown backend"))
        if not ok:
            out["providers"][key] = {"error": f"unavailable: {why}"}
            print(f"{key}: unavailable ({why})", flush=True)
            save()
            continue
        os.environ["MZSR_FAST_CUDA_VARIANT"] = variant
        try:
            kw = {} if name == "reference" else {"use_graphs": False}
            b = backends.get(name, dev, prec, **kw)

            def once():
                b.prepare(params, x.shape)
                b.adapt(x, t, sched)
                b.upscale(up)

            once()  # compile / tune / allocate
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                once()
                torch.cuda.synchronize()
            rows = [(e.key, _device_us(e), e.count) for e in prof.key_averages() if _on_device(e)]
            res = summarize(rows, a.top)
            out["providers"][key] = res
            fams = ", ".join(f"{k} {v / 1e3:.2f}" for k, v in res["families"].items())
            print(f"{key}: {res['total_us'] / 1e3:.2f} ms kernel time, {res['launches']} launches ({fams} ms)", flush=True)
        except Exception as e:  # noqa: BLE001 - a failing provider must not hide the others
            out["providers"][key] = {"error": f"{type(e).__name__}: {e}"[:2000]}
            print(f"{key}: ERROR {type(e).__name__}: {e}", flush=True)
        save()
    os.environ.pop("MZSR_FAST_CUDA_VARIANT", None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
