"""Interleaved whole-call timing on a GPU: ``adapt_and_upscale(steps=10)`` of Set5 ``baby``
(official g^d_2.0 LR, 256^2 -> 512^2, shipped weights) for every GPU backend/precision and
the cuDNN reference (TF32, ``cudnn.benchmark=True``), run round-robin so that every provider
sees the same clocks and background, with and without the prep CUDA graph
(``MZSR_FAST_PREP_GRAPH``).  Each round times every provider ``--calls`` times (median);
the JSON has each round's medians and speed-ups vs the reference of the same round.

    python benchmarks/ratio_whole.py --out ratio.json [--rounds 7] [--calls 15]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from mzsr_fast import adapt_and_upscale, backends
from mzsr_fast.benchutil import default_data_dir, machine_info, set5_g20

def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=15)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--image", default="baby.png")
    ap.add_argument("--data", default=default_data_dir())
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("needs CUDA")
        return 2
    dev = "cuda"
    torch.backends.cudnn.benchmark = True
    k, imgs = set5_g20(a.data)
    lr = imgs[a.image][0]
    x = torch.from_numpy(lr.copy()).permute(2, 0, 1).float().div(255).to(dev)
    # (backend, precision, prep graph "1"/"0"[, cuda kernel variant]): the variant is
    # MZSR_FAST_CUDA_VARIANT for that provider's calls (the API keeps one backend per value)
    providers = [("reference", "tf32", "1"), ("reference", "tf32", "0")]
    for name, (ok, why) in backends.available(dev).items():
        if name in ("reference", "cpu"):
            continue
        if not ok:
            print(f"backend {name}: unavailable ({why})", flush=True)
            continue
        for prec in ("bf16", "tf32"):
            providers.append((name, prec, "1"))
        if name == "triton":
            providers.append((name, "bf16", "0"))
        if name == "cuda":  # kernel variants 2 (halo/thin kernels) and 3 (+ bf16 activations)
            providers += [(name, "bf16", "1", "2"), (name, "bf16", "1", "3")]

    def call(name, prec, graph, variant="0"):
        os.environ["MZSR_FAST_PREP_GRAPH"] = graph
        os.environ["MZSR_FAST_CUDA_VARIANT"] = variant
        return adapt_and_upscale(x, kernel=k, steps=a.steps, backend=name, device=dev, precision=prec)

    ok_providers = []
    for p in providers:  # warm-up: autotuning, graph capture, cudnn.benchmark
        try:
            for _ in range(3):
                call(*p)
            torch.cuda.synchronize()
            ok_providers.append(p)
        except Exception as e:  # noqa: BLE001  (a failing backend must not lose the others)
            print(f"{p}: {type(e).__name__}: {e}", flush=True)
    rounds = []
    for r in range(a.rounds):
        med = {}
        for p in ok_providers:
            ts = []
            for _ in range(a.calls):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                call(*p)
                torch.cuda.synchronize()
                ts.append(time.perf_counter() - t0)
            med["/".join(p)] = statistics.median(ts) * 1e3
        rounds.append(med)
        ref = med["reference/tf32/1"]
        print(f"round {r}: " + "  ".join(f"{n} {v:.2f} ms ({ref / v:.2f}x)" for n, v in med.items()), flush=True)
    summary = {}
    for n in rounds[0]:
        ms = [rd[n] for rd in rounds]
        sp = [rd["reference/tf32/1"] / rd[n] for rd in rounds]
        summary[n] = {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms),
                      "speedup_vs_reference_tf32_median": statistics.median(sp),
                      "speedup_min": min(sp), "speedup_max": max(sp)}
        print(f"{n:24s} {statistics.median(ms):7.2f} ms  speed-up median {statistics.median(sp):.2f}x "
              f"(min {min(sp):.2f}, max {max(sp):.2f}) over {len(rounds)} rounds", flush=True)
    out = {"what": __doc__.split("\n\n")[0], "machine": machine_info(), "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
           "image": a.image, "steps": a.steps, "rounds": a.rounds, "calls_per_round": a.calls,
           "provider_key": "backend/precision/prep_graph(1=on)[/cuda kernel variant]", "summary": summary, "per_round_ms": rounds}
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
